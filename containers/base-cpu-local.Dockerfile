# A CPU stand-in for the CUDA PyTorch base image, built offline by .ci/docker-stage (image registries are
# unreachable from CI): a Debian bookworm root filesystem made with debootstrap and imported with
# `docker import` as ROOTFS_IMAGE, plus a virtualenv holding the CPU torch 2.13.0 wheel from the build
# context. It provides what containers/Dockerfile expects of BASE_IMAGE: python and pip on PATH, torch
# installed. Not for production: GPU nodes use the pytorch/pytorch CUDA image.
ARG ROOTFS_IMAGE=igpo-rootfs:bookworm
FROM ${ROOTFS_IMAGE}

# The CI machine's CA bundle (its package index may sit behind a TLS-inspecting proxy): pip in this base,
# and in images built on it, trusts what the CI host trusts. CI-only; the CUDA base needs none of this.
COPY certs/ca-bundle.crt /etc/ssl/certs/ca-certificates.crt
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt PATH=/opt/venv/bin:$PATH LANG=C.UTF-8
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
COPY wheels/ /tmp/wheels/
# torch's own dependencies (sympy, networkx, ...) come from PyPI; torch itself only from the local wheel.
RUN python3 -m venv /opt/venv \
    && pip install --no-index --find-links /tmp/wheels --no-deps "torch==2.13.0" \
    && pip install --find-links /tmp/wheels "torch==2.13.0" \
    && rm -rf /tmp/wheels \
    && python -c "import torch; print('torch', torch.__version__)"
CMD ["python3"]
