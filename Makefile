# The two set-up commands for a fresh machine: `make demo` and `make test`.
# Both install what they need (moto server, Terraform 1.0.3) project-locally.

CARGO ?= cargo

.PHONY: demo demo-stop test tools build worker bench

tools:
	bash scripts/install-tools.sh

build:
	$(CARGO) build --locked --bins

## The worker binary a release ships beside terraform-provider-coffer as coffer-linux-x86_64
## (release profile, linked against glibc 2.26 so it starts on Amazon Linux 2 and 2023);
## prints its path.
worker: tools
	bash scripts/build-worker.sh --release

## Starts the local AWS emulator, applies examples/quickstart against it and
## prints a summary, then (as root) boots one scheduled worker in a sandbox.
## `make demo-stop` stops the emulator.
demo: tools build
	bash scripts/demo.sh

demo-stop:
	bash scripts/demo.sh stop

## Every test: unit, protocol, and the acceptance suite with real terraform
## (1.0.3 and the newest on PATH) against moto.
test: tools
	$(CARGO) test --locked --workspace

## Benchmarks (release build): the plugin (benches/plugin.rs), the
## executor (benches/executor.rs) and image-level backups against restic
## (benches/repository.rs; builds its disk images with scripts/bench-image.sh,
## needs root); figures go to docs/benchmarks.md by hand.
bench: tools
	$(CARGO) bench --locked -p coffer-provider --bench plugin
	$(CARGO) bench --locked -p coffer-provider --bench executor
	$(CARGO) bench --locked -p coffer-provider --bench repository
