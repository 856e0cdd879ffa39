package jepsen

import (
	"context"
	"debug/buildinfo"
	"fmt"
	"slices"
	"strings"

	"github.com/bankd/bankd/internal/failpoint"
	"github.com/bankd/bankd/jepsen/gobuild"
)

// checkFailpoint refuses a failpoint run that would prove nothing: an unknown name, or a bankd
// binary built without the failpoints tag (where every failpoint is compiled out).
func checkFailpoint(name, bin string) error {
	if !failpoint.Known(name) {
		return fmt.Errorf("failpoint %q: want one of %s", name, strings.Join(failpoint.Names, ", "))
	}
	if !HasFailpoints(bin) {
		return fmt.Errorf("failpoint %s: %s was not built with -tags failpoints (see BuildFailpoints)", name, bin)
	}
	return nil
}

// failpointEnv is the agents' environment for a run with failpoint name ("" for none).
func failpointEnv(name string) []string {
	if name == "" {
		return nil
	}
	return []string{failpoint.EnvVar + "=" + name}
}

// HasFailpoints reports whether the Go binary at bin was built with the failpoints tag.
func HasFailpoints(bin string) bool {
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		return false
	}
	for _, s := range info.Settings {
		if s.Key == "-tags" && slices.Contains(strings.Split(s.Value, ","), "failpoints") {
			return true
		}
	}
	return false
}

// BuildFailpoints builds bankd with the failpoints tag into out, from the module the harness
// runs in. It needs the go tool (or pass a failpoints build as -bin).
func BuildFailpoints(ctx context.Context, out string) error {
	return gobuild.Build(ctx, out, "./cmd/bankd", "failpoints")
}
