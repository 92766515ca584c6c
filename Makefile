# The two commands: `make demo` (the main job, offline) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: demo test clean browser

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	touch $@

test: $(VENV)/.installed browser
	$(PY) -m pytest -q

# Headless Chromium for the report.html browser test: installed when missing and possible
# (root with apt-get); never fails the build - the test skips with a message without it.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium for the report browser test (apt-get) ..."; \
	    (apt-get install -y -q chromium >/dev/null 2>&1 || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1)) \
	      || echo "note: could not install chromium; the browser test will skip"; \
	  else echo "note: chromium not found (not root or no apt-get); the browser test will skip"; fi; } || true

demo: $(VENV)/.installed
	$(VENV)/bin/microlad demo --out demo_out --overwrite


clean:
	rm -rf demo_out .pytest_cache build src/*.egg-info
