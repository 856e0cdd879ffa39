// Package deploy holds what operators deploy beside the bankd binaries: Prometheus alert rules
// (prometheus/alerts.yml) with their promtool unit tests, and a Grafana dashboard
// (grafana/bankd.json). Its Go tests run promtool on the rules and check that the rules and the
// dashboard use only metrics docs/OPERATIONS.md documents.
package deploy
