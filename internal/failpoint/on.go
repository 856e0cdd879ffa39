//go:build failpoints

package failpoint

import (
	"fmt"
	"os"
	"strings"
)

// Built reports whether this binary was built with the failpoints tag.
const Built = true

// active is read once, before main runs, from EnvVar.
var active = parse(os.Getenv(EnvVar))

func init() {
	if len(active) > 0 {
		// Loud on purpose: a process running with failpoints is deliberately broken.
		fmt.Fprintf(os.Stderr, "bankd: FAILPOINTS ENABLED (%s=%s): this process is deliberately broken\n", EnvVar, strings.Join(Active(), ","))
	}
}

func parse(env string) map[string]bool {
	m := map[string]bool{}
	for _, name := range strings.Split(env, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		if !Known(name) {
			fmt.Fprintf(os.Stderr, "bankd: unknown failpoint %q in %s (known: %s)\n", name, EnvVar, strings.Join(Names, ", "))
		}
		m[name] = true
	}
	return m
}

// Enabled reports whether BANKD_FAILPOINTS named this failpoint when the process started.
func Enabled(name string) bool { return active[name] }

// Active returns the failpoints in effect, in the order of Names.
func Active() []string {
	var out []string
	for _, n := range Names {
		if active[n] {
			out = append(out, n)
		}
	}
	return out
}
