# Common loops. The two set-up commands live in the README; these assume the venv is active.
.PHONY: plan test lint format bench

plan:            ## offline plan of every stack, with JSON and Markdown under out/
	for s in dev staging prod; do aicloud plan $$s --summary --json out/$$s.json --markdown out/$$s.md || exit $$?; done

test:
	pytest -q

lint:
	ruff check . && ruff format --check .

format:
	ruff format . && ruff check --fix .

bench:
	python benchmarks/plan_scaling.py
	python benchmarks/trainer_throughput.py
	python benchmarks/server_throughput.py
