//go:build !failpoints

package failpoint

// Built reports whether this binary was built with the failpoints tag.
const Built = false

// Enabled is always false without the failpoints build tag, whatever the environment says. It
// is a constant, so `if failpoint.Enabled(...)` blocks are compiled out of production binaries.
func Enabled(string) bool { return false }

// Active returns the failpoints in effect: none without the build tag.
func Active() []string { return nil }
