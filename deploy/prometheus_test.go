package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestAlertRulesPassPromtool checks prometheus/alerts.yml with `promtool check rules` and runs
// its unit tests (prometheus/alerts_test.yml) with `promtool test rules`. make test installs
// promtool (Debian's prometheus package) and sets BANKD_REQUIRE_PROMTOOL=1, so there it fails
// rather than skips when promtool is missing.
func TestAlertRulesPassPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("BANKD_REQUIRE_PROMTOOL") == "1" {
			t.Fatalf("promtool not found: %v (make deps-prometheus installs it)", err)
		}
		t.Skip("promtool not found: apt-get install prometheus, or make deps-prometheus")
	}
	dir := filepath.Join("prometheus")
	for _, args := range [][]string{
		{"check", "rules", "alerts.yml"},
		{"test", "rules", "alerts_test.yml"},
	} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		t.Logf("promtool %s:\n%s", strings.Join(args, " "), out)
	}
}
