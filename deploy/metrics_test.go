package deploy

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
)

var metricName = regexp.MustCompile(`\bbankd_[a-z0-9_]+`)

// TestDashboardAndAlertsUseDocumentedMetrics checks that the Grafana dashboard is valid JSON
// whose panels all query something, and that every bankd metric the dashboard and the alert
// rules use is one the metrics table of docs/OPERATIONS.md documents: a renamed or removed metric would
// otherwise leave a panel empty and an alert silent.
func TestDashboardAndAlertsUseDocumentedMetrics(t *testing.T) {
	doc, err := os.ReadFile("../docs/OPERATIONS.md")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile("grafana/bankd.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("grafana/bankd.json: %v", err)
	}
	if dash.Title == "" || len(dash.Panels) == 0 {
		t.Fatalf("grafana/bankd.json has no title or no panels")
	}
	var exprs []string
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q queries nothing", p.Title)
		}
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	rules, err := os.ReadFile("prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	exprs = append(exprs, string(rules))

	used := map[string]bool{}
	for _, e := range exprs {
		for _, name := range metricName.FindAllString(e, -1) {
			for _, suffix := range []string{"_bucket", "_count", "_sum"} {
				name = strings.TrimSuffix(name, suffix)
			}
			used[name] = true
		}
	}
	if len(used) < 10 {
		t.Fatalf("only %d bankd metrics found in the dashboard and rules: %v", len(used), used)
	}
	for name := range used {
		if !strings.Contains(string(doc), "| `"+name+"`") && !strings.Contains(string(doc), ", `"+name+"`") {
			t.Errorf("%s is used by the dashboard or the alert rules but is not in the metrics table of docs/OPERATIONS.md", name)
		}
	}
}
