# syntax=docker/dockerfile:1
#
# The platemask image: the official Airflow image, extended as the Airflow docker-stack guide
# recommends, with everything installed at build time: requirements.txt, the plate model package,
# this project, and the default model already converted to OpenVINO. Nothing is downloaded or
# installed when a container starts (no _PIP_ADDITIONAL_REQUIREMENTS).
#
#   docker compose build                                           # CPU-only torch (default)
#   docker compose build --build-arg PIP_EXTRA_INDEX_URL=          # PyPI's default torch (CUDA)
#
# Two targets: `platemask` (the default, what every Airflow service runs) and `demo`, the same
# plus the Japanese font that the demo's photo generator draws plates with; only the one-shot
# demo-seed service of the `demo` profile uses it.
#
# README.md (Operations guide) explains the choices. tests/deploy/test_deployment.py checks this file.
FROM apache/airflow:3.3.2-python3.11 AS platemask

# An index pip consults next to PyPI. PyTorch's CPU index makes `torch==2.14.1` in
# requirements.txt resolve to 2.14.1+cpu (a local version ranks above the plain one), which
# leaves out several GB of CUDA libraries that CPU workers never use.
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

# 1. Runtime dependencies, pinned. Naming apache-airflow again keeps pip from moving the image's
#    Airflow to another version while it resolves requirements.txt.
COPY --chown=airflow:0 requirements.txt /opt/platemask/requirements.txt
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -r /opt/platemask/requirements.txt

# 2. The plate model package. Its own pins are years old; its real dependencies (ultralytics,
#    torch, ...) came with requirements.txt, hence --no-deps.
RUN pip install --no-cache-dir --no-deps platedet==0.0.2
# The second look's text detector (PP-OCRv4 det, Apache-2.0): only its ONNX file is used, run by
# OpenVINO; --no-deps keeps out its GUI OpenCV, pyclipper and shapely.
RUN pip install --no-cache-dir --no-deps rapidocr-onnxruntime==1.4.4

# 3. This project (packages platemask and platemask_airflow, console script `platemask`).
#    Its dependencies are requirements.txt, already installed.
COPY --chown=airflow:0 pyproject.toml README.md /opt/platemask/
COPY --chown=airflow:0 include/ /opt/platemask/include/
COPY --chown=airflow:0 plugins/ /opt/platemask/plugins/
RUN pip install --no-cache-dir --no-deps /opt/platemask

# 4. The default model ships ready to run (INT8 OpenVINO IR, in the package). Its full-precision
#    copy (PLATE_MODEL=<python prefix>/share/platemask/plates_openvino_model) is converted here,
#    once, so no worker converts or downloads anything.
RUN platemask prepare-model \
    && chmod -R g+rwX "${YOLO_CONFIG_DIR}"

LABEL org.opencontainers.image.title="platemask" \
      org.opencontainers.image.description="Apache Airflow 3.3 with platemask: hides licence plates in used-car photos"

# The demo's photo generator (tests/support/synthetic.py, mounted by demo-seed) draws Japanese
# plates in IPAexGothic; the product itself never draws text, so only this target has the font.
FROM platemask AS demo
RUN pip install --no-cache-dir matplotlib-fontja==1.1.0
