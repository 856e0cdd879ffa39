//go:build !failpoints

package failpoint

import (
	"bytes"
	"debug/buildinfo"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestProductionBuildIgnoresTheEnvironment runs this test binary again with every failpoint
// named in BANKD_FAILPOINTS (the variable is read at process start in a failpoints build, so it
// must be set before the process exists) and checks that none is enabled.
func TestProductionBuildIgnoresTheEnvironment(t *testing.T) {
	if os.Getenv("FAILPOINT_TEST_CHILD") == "1" {
		if Built {
			t.Fatal("Built is true without the failpoints tag")
		}
		if os.Getenv(EnvVar) == "" {
			t.Fatalf("child started without %s", EnvVar)
		}
		for _, n := range append(Names, "", "anything") {
			if Enabled(n) {
				t.Errorf("Enabled(%q) = true in a build without the failpoints tag", n)
			}
		}
		if a := Active(); len(a) != 0 {
			t.Errorf("Active() = %v", a)
		}
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestProductionBuildIgnoresTheEnvironment$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "FAILPOINT_TEST_CHILD=1", EnvVar+"="+strings.Join(Names, ","))
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("--- PASS: TestProductionBuildIgnoresTheEnvironment")) {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

// TestProductionBinaryCarriesNoFailpoints builds bankd as `make build` does and checks that the
// binary has neither the failpoints tag nor the code that reads BANKD_FAILPOINTS.
func TestProductionBinaryCarriesNoFailpoints(t *testing.T) {
	if testing.Short() {
		t.Skip("builds bankd; skipped with -short")
	}
	bin := filepath.Join(t.TempDir(), "bankd")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/bankd/bankd/cmd/bankd")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range info.Settings {
		if s.Key == "-tags" && strings.Contains(s.Value, "failpoints") {
			t.Fatalf("production build has tags %q", s.Value)
		}
	}
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range append([]string{EnvVar, "FAILPOINTS ENABLED"}, Names...) {
		if bytes.Contains(b, []byte(s)) {
			t.Errorf("production binary contains %q", s)
		}
	}
}
