"""Host-only fakes of the guest's channels, for unit tests that run in seconds without root,
QEMU or a kernel build: `machine.FakeMachine` (the real `Machine` over a golden-log console),
`ssh.FakeSsh` (an `sh` that speaks the module client's protocol), `qmp.FakeQmp` (over
`FakeMemory`) and `module.FakeModule` (the debugfs grammar over the Python table model)."""
