# bankd/signerd: the hot wallet's signer. Its key, token and state file live in the volume;
# nothing of a bankd node's does.
FROM scratch
COPY rootfs/ /
COPY --chown=65532:65532 data/ /var/lib/signerd/
USER 65532:65532
ENV HOME=/var/lib/signerd
WORKDIR /var/lib/signerd
VOLUME ["/var/lib/signerd"]
ENTRYPOINT ["/usr/local/bin/signerd"]
CMD ["-config", "/var/lib/signerd/signerd.hcl"]
