"""Time ceilings for tests: safety nets against a hang, never a statement about speed.

The full suite must pass on a machine 10x slower than usual and while a second copy of it runs at the same
time (issue 15, item 4), where two torch processes spin-waiting on the same cores can be another 10-40x
slower still. So a test waits for an event (a process exiting, a file appearing while its writer is alive,
a page signalling it is ready), and the ceiling below only stops a hung test from blocking CI forever. A
test that passes never comes near it: raising it costs nothing, lowering it makes the suite flaky.
"""

HANG_S = 3600  # seconds: subprocess.run(timeout=), Popen.wait(timeout=), polling loops
HANG_MS = HANG_S * 1000  # the same, for APIs in milliseconds (Playwright)
