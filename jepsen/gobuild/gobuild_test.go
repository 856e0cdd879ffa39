package gobuild

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBuild(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "fakelnd")
	if err := Build(context.Background(), out, "./jepsen/cmd/fakelnd"); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(out); err != nil || fi.Mode()&0o111 == 0 {
		t.Fatalf("built %s: %v %v", out, fi, err)
	}
	err := Build(context.Background(), filepath.Join(dir, "x"), "./no/such/package", "failpoints")
	if err == nil || !strings.Contains(err.Error(), "go build -tags failpoints -o") || !strings.Contains(err.Error(), "no/such/package") {
		t.Fatalf("a missing package: %v", err)
	}
}

func TestBuildOutsideTheModule(t *testing.T) {
	t.Chdir(t.TempDir())
	if err := Build(context.Background(), "x", "./cmd/bankd"); err == nil || !strings.Contains(err.Error(), "not inside the bankd module") {
		t.Fatalf("outside the module: %v", err)
	}
}
