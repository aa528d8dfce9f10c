# Common loops. The two set-up commands live in the README; these assume the venv is active.
.PHONY: plan test lint format bench lock lock-workloads

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

lock-workloads:  ## requirements/workloads.txt: the tested environment's versions, installed by the images
	python requirements/freeze_workloads.py

lock:            ## the hashed lock the workflows install from (infrastructure side only, no torch)
	pip-compile --generate-hashes --strip-extras --allow-unsafe --no-emit-index-url --no-emit-find-links \
		-o requirements/ci.lock pyproject.toml
