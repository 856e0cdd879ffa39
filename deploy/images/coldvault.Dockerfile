# bankd/coldvault: keeps the hot wallet inside its band by proposing moves to and from the cold
# wallet. It keeps no state of its own; its config, token and CA certificate are mounted.
FROM scratch
COPY rootfs/ /
COPY --chown=65532:65532 data/ /etc/coldvault/
USER 65532:65532
ENV HOME=/etc/coldvault
WORKDIR /etc/coldvault
ENTRYPOINT ["/usr/local/bin/coldvault"]
CMD ["-config", "/etc/coldvault/coldvault.hcl"]
