package kernels

import "syscall"

// osYield gives the core to another runnable thread, of this process or
// any other, and returns at once when there is none (sched_yield(2)).
// runtime.Gosched only hands the P to another goroutine, which does not
// help when a different process is waiting for the core.
func osYield() {
	syscall.RawSyscall(syscall.SYS_SCHED_YIELD, 0, 0, 0)
}
