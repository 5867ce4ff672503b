"""Stand-ins for Slurm's `srun` and `scontrol`, for running the sbatch templates on one machine."""

FAKE_SRUN = """#!/bin/bash
# srun [options] command: the command once per node (the templates ask for one task per node)
while [[ "${1:-}" == --* ]]; do shift; done
pids=()
for ((n = 0; n < ${SLURM_NNODES:-1}; n++)); do
    SLURM_NODEID=$n SLURM_PROCID=$n "$@" &
    pids+=($!)
    if [ -n "${SRUN_PIDS:-}" ]; then echo $! >> "$SRUN_PIDS"; fi  # for tests that signal the tasks, as Slurm does
done
rc=0
for pid in "${pids[@]}"; do wait "$pid" || rc=$?; done
exit $rc
"""

FAKE_SCONTROL = """#!/bin/bash
# scontrol show hostnames LIST: this machine; anything else (requeue) is recorded
if [ "$1 $2" = "show hostnames" ]; then echo 127.0.0.1; else echo "$@" >> "$SCONTROL_LOG"; fi
"""
