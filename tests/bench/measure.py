"""Measuring a child process from outside, shared by the benchmark scripts.

`wait_measured(child)` waits for a `subprocess.Popen` child while polling
its peak resident set (VmHWM, the kernel's high-water mark of the
process's own memory), and returns (exit code, peak KiB, CPU seconds). CPU
time comes from wait4; its ru_maxrss is not used, since it starts from the
peak of the process that spawned the child.
"""
import os
import time


def wait_measured(child, every=0.01):
    peak = 0
    while True:
        try:
            with open(f"/proc/{child.pid}/status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]))
        except OSError:
            pass
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid:
            child.returncode = os.waitstatus_to_exitcode(status)
            return child.returncode, peak, usage.ru_utime + usage.ru_stime
        time.sleep(every)
