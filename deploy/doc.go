// Package deploy holds what operators deploy beside the bankd binaries: Prometheus alert rules
// (prometheus/alerts.yml) with their promtool unit tests. Its Go test runs promtool on them.
package deploy
