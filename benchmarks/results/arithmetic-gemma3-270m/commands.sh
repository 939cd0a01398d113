# The three runs behind this folder, in order (each adds its strategies to results.jsonl;
# the last one's `report` drew curve.png and summary.json from all of them):
OUT=benchmarks/results/arithmetic-gemma3-270m
COMMON="--backend llamacpp-local --option n_threads=2 --params 268M --problems 20 --concurrency 8 --label gemma3-270m --out $OUT"
python benchmarks/arithmetic_chains.py $COMMON --strategies rebase,sampling --budgets 1,2,4,8,16,32,64
python benchmarks/arithmetic_chains.py $COMMON --strategies dvts --budgets 4,16,64
python benchmarks/arithmetic_chains.py $COMMON --strategies mcts --budgets 2,8,32
# Each run prints the `rebase-agent eval` and `rebase-agent report` commands it executes.
