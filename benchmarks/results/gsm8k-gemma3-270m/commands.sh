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
