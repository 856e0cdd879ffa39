//go:build !linux

package regtest

import "syscall"

// sysProcAttr has nothing to add outside Linux, which alone has a parent-death signal.
func sysProcAttr() *syscall.SysProcAttr { return nil }
