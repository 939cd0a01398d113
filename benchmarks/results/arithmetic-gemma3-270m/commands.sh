# 2026-12-01 14:37: python benchmarks/arithmetic_chains.py --backend llamacpp-local --option n_threads=2 --params 268M --problems 100 --concurrency 8 --label gemma3-270m --out benchmarks/results/arithmetic-gemma3-270m --strategies rebase,sampling --budgets 1,4,16,64
rebase-agent eval benchmarks/results/arithmetic-gemma3-270m/chains.jsonl --format jsonl --field id=id --strategy rebase --strategy sampling --budgets 1,4,16,64 --backend llamacpp-local --option n_threads=2 --option 'template=Start with 2. Add 5. Multiply by 3.
Step 1: 2 + 5 = 7
Step 2: 7 * 3 = 21
The answer is 21

Start with 9. Subtract 4. Multiply by 2. Add 1.
Step 1: 9 - 4 = 5
Step 2: 5 * 2 = 10
Step 3: 10 + 1 = 11
The answer is 11

{problem}
{solution}' --verifier arithmetic --set 'step_delimiters=["\n"]' --set max_depth=5 --set max_step_tokens=32 --set answer_equivalence=normalized --set aggregation=weighted_majority --set balance_temperature=0.2 --set temperature=1.0 --seed 0 --concurrency 8 --label gemma3-270m -o benchmarks/results/arithmetic-gemma3-270m/results.jsonl
# stopped at 2026-12-01 16:40 after 25 of 100 problems (see README.md); phases.sh resumes it
# 2026-12-01 17:31: python benchmarks/arithmetic_chains.py --backend llamacpp-local --option n_threads=2 --params 268M --problems 100 --concurrency 8 --label gemma3-270m --out benchmarks/results/arithmetic-gemma3-270m --strategies rebase,sampling --budgets 1,4,16,64
rebase-agent eval benchmarks/results/arithmetic-gemma3-270m/chains.jsonl --format jsonl --field id=id --strategy rebase --strategy sampling --budgets 1,4,16,64 --backend llamacpp-local --option n_threads=2 --option 'template=Start with 2. Add 5. Multiply by 3.
Step 1: 2 + 5 = 7
Step 2: 7 * 3 = 21
The answer is 21

Start with 9. Subtract 4. Multiply by 2. Add 1.
Step 1: 9 - 4 = 5
Step 2: 5 * 2 = 10
Step 3: 10 + 1 = 11
The answer is 11

{problem}
{solution}' --verifier arithmetic --set 'step_delimiters=["\n"]' --set max_depth=5 --set max_step_tokens=32 --set answer_equivalence=normalized --set aggregation=weighted_majority --set balance_temperature=0.2 --set temperature=1.0 --seed 0 --concurrency 8 --label gemma3-270m -o benchmarks/results/arithmetic-gemma3-270m/results.jsonl
# 2026-12-01 20:29: python benchmarks/arithmetic_chains.py --backend llamacpp-local --option n_threads=2 --params 268M --problems 58 --concurrency 8 --label gemma3-270m --out benchmarks/results/arithmetic-gemma3-270m --strategies beam,dvts,mcts --budgets 4,16,64
rebase-agent eval benchmarks/results/arithmetic-gemma3-270m/chains.jsonl --format jsonl --field id=id --strategy beam --strategy dvts --strategy mcts --budgets 4,16,64 --backend llamacpp-local --option n_threads=2 --option 'template=Start with 2. Add 5. Multiply by 3.
Step 1: 2 + 5 = 7
Step 2: 7 * 3 = 21
The answer is 21

Start with 9. Subtract 4. Multiply by 2. Add 1.
Step 1: 9 - 4 = 5
Step 2: 5 * 2 = 10
Step 3: 10 + 1 = 11
The answer is 11

{problem}
{solution}' --verifier arithmetic --set 'step_delimiters=["\n"]' --set max_depth=5 --set max_step_tokens=32 --set answer_equivalence=normalized --set aggregation=weighted_majority --set balance_temperature=0.2 --set temperature=1.0 --seed 0 --concurrency 8 --label gemma3-270m -o benchmarks/results/arithmetic-gemma3-270m/results.jsonl
# 2026-12-01 20:59: python benchmarks/arithmetic_chains.py --backend llamacpp-local --option n_threads=2 --params 268M --problems 58 --concurrency 16 --label gemma3-270m --out benchmarks/results/arithmetic-gemma3-270m --strategies beam,dvts,mcts --budgets 4,16,64
rebase-agent eval benchmarks/results/arithmetic-gemma3-270m/chains.jsonl --format jsonl --field id=id --strategy beam --strategy dvts --strategy mcts --budgets 4,16,64 --backend llamacpp-local --option n_threads=2 --option 'template=Start with 2. Add 5. Multiply by 3.
Step 1: 2 + 5 = 7
Step 2: 7 * 3 = 21
The answer is 21

Start with 9. Subtract 4. Multiply by 2. Add 1.
Step 1: 9 - 4 = 5
Step 2: 5 * 2 = 10
Step 3: 10 + 1 = 11
The answer is 11

{problem}
{solution}' --verifier arithmetic --set 'step_delimiters=["\n"]' --set max_depth=5 --set max_step_tokens=32 --set answer_equivalence=normalized --set aggregation=weighted_majority --set balance_temperature=0.2 --set temperature=1.0 --seed 0 --concurrency 16 --label gemma3-270m -o benchmarks/results/arithmetic-gemma3-270m/results.jsonl
# 2026-12-02 04:59: python benchmarks/arithmetic_chains.py --backend llamacpp-local --option n_threads=2 --params 268M --problems 58 --concurrency 16 --label gemma3-270m --out benchmarks/results/arithmetic-gemma3-270m --strategies beam,dvts,mcts --budgets 4,16,64
rebase-agent eval benchmarks/results/arithmetic-gemma3-270m/chains.jsonl --format jsonl --field id=id --strategy beam --strategy dvts --strategy mcts --budgets 4,16,64 --backend llamacpp-local --option n_threads=2 --option 'template=Start with 2. Add 5. Multiply by 3.
Step 1: 2 + 5 = 7
Step 2: 7 * 3 = 21
The answer is 21

Start with 9. Subtract 4. Multiply by 2. Add 1.
Step 1: 9 - 4 = 5
Step 2: 5 * 2 = 10
Step 3: 10 + 1 = 11
The answer is 11

{problem}
{solution}' --verifier arithmetic --set 'step_delimiters=["\n"]' --set max_depth=5 --set max_step_tokens=32 --set answer_equivalence=normalized --set aggregation=weighted_majority --set balance_temperature=0.2 --set temperature=1.0 --seed 0 --concurrency 16 --label gemma3-270m -o benchmarks/results/arithmetic-gemma3-270m/results.jsonl
rebase-agent report benchmarks/results/arithmetic-gemma3-270m/results.jsonl --png benchmarks/results/arithmetic-gemma3-270m/curve.png --json benchmarks/results/arithmetic-gemma3-270m/summary.json --title 'arithmetic chains (3 steps), gemma3-270m' --params 268M
# stopped 2026-12-02 05:56: phase 2 complete on the 58 chains of phase 1 (see README.md); report regenerated with pass@N
# 2026-12-02 06:14: each problem's whole prompt counted into the rows (they predate the count), then the report again:
python benchmarks/count_prompts.py benchmarks/results/arithmetic-gemma3-270m/results.jsonl --arithmetic
rebase-agent report benchmarks/results/arithmetic-gemma3-270m/results.jsonl --params 268M --png benchmarks/results/arithmetic-gemma3-270m/curve.png --json benchmarks/results/arithmetic-gemma3-270m/summary.json --title "arithmetic chains (3 steps), gemma3-270m"
