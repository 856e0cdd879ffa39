package regtest

import "syscall"

// sysProcAttr makes the kernel kill btcd when the process that started it dies, so that a
// crashed or killed test leaves no btcd behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
