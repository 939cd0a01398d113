# The compute-matched rerun behind this folder (issue 12), in phases that add to one results file
# (commands.sh: the exact eval and report commands of the runs so far).
# Every phase resumes: rerunning a command redoes nothing finished. results.jsonl is kept
# compressed in the repository; unpack it before resuming and pack it again after:
#   gunzip -k benchmarks/results/arithmetic-gemma3-270m/results.jsonl.gz
#   ... a phase ...
#   gzip -kf benchmarks/results/arithmetic-gemma3-270m/results.jsonl
OUT=benchmarks/results/arithmetic-gemma3-270m
COMMON="--backend llamacpp-local --option n_threads=2 --params 268M --problems 100 --concurrency 8 --label gemma3-270m --out $OUT"

# Phase 1: REBASE at every budget, sampling at 64 (smaller budgets read from its first paths).
python benchmarks/arithmetic_chains.py $COMMON --strategies rebase,sampling --budgets 1,4,16,64
# Phase 2: the other strategies at the same budgets, on the 58 chains of phase 1 (run with
# --problems 58 --concurrency 16 in place of COMMON's --problems 100 --concurrency 8; done on all
# 58).
python benchmarks/arithmetic_chains.py $COMMON --strategies beam,dvts,mcts --budgets 4,16,64

# Each phase ends with `rebase-agent report`; for the rows so far:
rebase-agent report $OUT/results.jsonl --params 268M --png $OUT/curve.png --json $OUT/summary.json \
    --title "arithmetic chains (3 steps), gemma3-270m"
