# Common loops. The two set-up commands live in the README; these assume the venv is active.
.PHONY: plan test lint format bench facts lock lock-workloads

plan:            ## offline plan of every stack, with JSON and Markdown under out/
	for s in dev staging prod; do aicloud plan $$s --summary --json out/$$s.json --markdown out/$$s.md || exit $$?; done

test:
	pytest -q

lint:
	ruff check . && ruff format --check .

format:
	ruff format . && ruff check --fix .

bench:           ## every script behind the README's figures (tests/test_readme_facts.py keeps this list whole)
	python benchmarks/plan_scaling.py
	python benchmarks/stack_figures.py
	python benchmarks/plan_before_after.py --base HEAD
	python benchmarks/capacity_figures.py
	python benchmarks/serving_figures.py
	python benchmarks/security_scan.py
	python benchmarks/checkpoint_crash.py
	python benchmarks/trainer_throughput.py
	python benchmarks/trainer_streaming.py
	python benchmarks/trainer_exit_soak.py
	python benchmarks/server_throughput.py
	python benchmarks/server_vs_kserve.py
	python benchmarks/drift_detector.py

facts:           ## the README's counted facts (resources, rules, tests, bench list, plan excerpt)
	python benchmarks/readme_facts.py --write

lock-workloads:  ## requirements/workloads.txt: the tested environment's versions, installed by the images
	python requirements/freeze_workloads.py

lock:            ## the hashed lock the workflows install from (infrastructure side only, no torch)
	pip-compile --generate-hashes --strip-extras --allow-unsafe --no-emit-index-url --no-emit-find-links \
		-o requirements/ci.lock pyproject.toml
