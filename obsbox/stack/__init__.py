"""The engine behind `obsbox up`: where the stack tree is, and how it runs.

| module | what it does |
|---|---|
| engine | what the CLI calls: pick a runtime, up/down/status, chaos on the sample shop |
| docker | the docker runtime (`docker compose` on stack.yml; the docker SDK to find an engine) |
| native | the native runtime (supervised local processes, configs rendered from the tree) |
| compose, native_config, render | reading stack.yml; native Prometheus/Alertmanager configs; per-component renderers |
| components, binaries | what each component is called and listens on; finding or downloading (verified) binaries |
| process, _supervise | starting, supervising and stopping native processes; stale pid records |
| state, ports, health, logs | the state dir; port checks; HTTP health and alert APIs; log files |
| model, errors | what runtimes report (status --json schema); the failures the CLI turns into messages |
| top, check | `obsbox top`'s screen; `obsbox check`'s validations |
| tree | where the stack tree lives (`stack_root()`) |
"""
