# snnc: `make demo` (set up + run the digits example), `make test` (set up + run pytest), `make bench`,
# `make interop` (the framework interop matrix: noxfile.py, one venv per framework under .nox/; docs/interop.md).
VENV    := .venv
PYTHON  := $(VENV)/bin/python
STAMP   := $(VENV)/.snnc-installed

.PHONY: venv demo test interop bench clean
venv: $(STAMP)

# lava-nc 0.10.0 runs only on Python 3.10: a working python3.10 on PATH, else pyenv's 3.10.x.
$(STAMP): pyproject.toml
	@py=""; \
	for c in python3.10 $$(ls -d $$(pyenv root 2>/dev/null || echo $$HOME/.pyenv)/versions/3.10.*/bin/python3.10 2>/dev/null | sort -rV); do \
	  if "$$c" -c 'import sys; assert sys.version_info[:2] == (3, 10)' >/dev/null 2>&1; then py="$$c"; break; fi; \
	done; \
	if [ -z "$$py" ]; then echo "snnc needs Python 3.10 (lava-nc 0.10.0 runs only on 3.10): install it (e.g. pyenv install 3.10) and rerun" >&2; exit 1; fi; \
	echo "using $$py"; \
	[ -x $(PYTHON) ] || "$$py" -m venv $(VENV)
	$(PYTHON) -m pip install -q --upgrade pip setuptools wheel
	$(PYTHON) -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: venv
	$(PYTHON) examples/digits/run.py

test: venv
	$(PYTHON) -m pytest -q -p no:cacheprovider

# NOX_ARGS: e.g. NOX_ARGS="-s sinabs" for one session, NOX_ARGS="-s nir -- 1.0.4" for one nir release
interop: venv
	@start=$$(date +%s); $(PYTHON) -m nox $(NOX_ARGS); rc=$$?; \
	echo "make interop: $$(( $$(date +%s) - start )) s, exit $$rc"; exit $$rc

bench: venv
	@for b in bench/*.py; do echo "== $$b"; $(PYTHON) $$b || exit 1; done

clean:
	rm -rf $(VENV) out .nox
