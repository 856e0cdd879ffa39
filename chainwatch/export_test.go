package chainwatch

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// What the cluster tests (package chainwatch_test, which runs real agents and so cannot be
// package chainwatch: the agent imports chainwatch) need from the package's own tests.

// KindNetwork is the errors_total kind of a node or wallets on another network.
const KindNetwork = kindNetwork

// AccountTpub is the regtest account key m/84'/1'/n' of a fixed seed.
func AccountTpub(t testing.TB, n uint32) string { return testTpub(t, n) }

// DepositDescriptor is a receive/change descriptor of the n-th test key.
func DepositDescriptor(t testing.TB, n uint32) string { return depositDescriptor(t, n) }

// MetricValue is the value of a counter or gauge (with the given label pairs) in reg.
func MetricValue(t testing.TB, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	return metricValue(t, reg, name, labels...)
}
