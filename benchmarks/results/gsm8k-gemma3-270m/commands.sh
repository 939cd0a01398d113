# GSM8K test set, the embedded default (Gemma 3 270M policy, LLM judge on the same model):
# REBASE at budgets 1, 4, 16 and 64 and sampling at 64 (its smaller budgets read from its first
# paths), 16 searches in flight on 2 cores. Resumable: rerun the same command to go on (unpack
# results.jsonl.gz to results.jsonl first on a fresh clone).
# 2026-12-01 23:26: started; stopped 2026-12-02 01:05 (7 problems)
# 2026-12-02 01:51: resumed with the same command; stopped 03:52 (14 problems; see README.md)
rebase-agent eval ../shared/data/gsm8k_test.jsonl --limit 50 --strategy rebase --strategy sampling --budgets 1,4,16,64 --seed 0 --concurrency 16 -o benchmarks/results/gsm8k-gemma3-270m/results.jsonl --no-progress
# then:
gzip -kf -9 benchmarks/results/gsm8k-gemma3-270m/results.jsonl
rebase-agent report benchmarks/results/gsm8k-gemma3-270m/results.jsonl.gz --params 268M --png benchmarks/results/gsm8k-gemma3-270m/curve.png --json benchmarks/results/gsm8k-gemma3-270m/summary.json --title "GSM8K, gemma3-270m (embedded default)"
# 2026-12-02 06:05: resumed with the same command (the engine now with 32 rows a ubatch and even logits rows: about 5.3 min a problem, was 9); stopped 07:07 (25 problems; see README.md)
# then each problem's whole prompt counted into the rows (they predate the count):
python benchmarks/count_prompts.py benchmarks/results/gsm8k-gemma3-270m/results.jsonl
# 2026-12-02 18:39: resumed on a fresh machine from the committed 25-problem results.jsonl.gz (a
# sitting from 09:23 had reached 44 problems; its uncommitted rows were lost with its machine);
# done 20:07 (50 problems; see README.md). Then the older rows' prompts and the calculator's
# continuations counted into them (rows of this sitting record both):
python benchmarks/count_prompts.py benchmarks/results/gsm8k-gemma3-270m/results.jsonl
python benchmarks/count_continuations.py benchmarks/results/gsm8k-gemma3-270m/results.jsonl
gzip -kf -9 benchmarks/results/gsm8k-gemma3-270m/results.jsonl
rebase-agent report benchmarks/results/gsm8k-gemma3-270m/results.jsonl.gz --params 268M --png benchmarks/results/gsm8k-gemma3-270m/curve.png --json benchmarks/results/gsm8k-gemma3-270m/summary.json --title "GSM8K, gemma3-270m (embedded default)"
# 2026-12-03 13:37: phase 2, beam search, DVTS and MCTS at 4, 16 and 64 on the first 25 problems
# (the same judge, seed and concurrency; two earlier sittings, 2026-12-02 23:11 and 2026-12-03
# 08:09, were lost with their machines before their rows landed); done 15:25:
rebase-agent eval ../shared/data/gsm8k_test.jsonl --limit 25 --strategy beam --strategy dvts --strategy mcts --budgets 4,16,64 --seed 0 --concurrency 16 -o benchmarks/results/gsm8k-gemma3-270m/results.jsonl --no-progress
gzip -kf -9 benchmarks/results/gsm8k-gemma3-270m/results.jsonl
rebase-agent report benchmarks/results/gsm8k-gemma3-270m/results.jsonl.gz --params 268M --png benchmarks/results/gsm8k-gemma3-270m/curve.png --json benchmarks/results/gsm8k-gemma3-270m/summary.json --title "GSM8K, gemma3-270m (embedded default)"
rebase-agent report benchmarks/results/gsm8k-gemma3-270m/results.jsonl.gz --params 268M --baseline rebase
