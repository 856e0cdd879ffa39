# bankd/bankd: one bankd node (`bankd agent -config FILE -node ID`) and the `bankd tls` tools.
# FROM scratch: the static binary, an empty /tmp and the data directory, nothing else.
FROM scratch
COPY rootfs/ /
COPY --chown=65532:65532 data/ /var/lib/bankd/
USER 65532:65532
ENV HOME=/var/lib/bankd
WORKDIR /var/lib/bankd
# The node's Raft log, snapshots and Pebble state (data_dir under this folder).
VOLUME ["/var/lib/bankd"]
# raft_addr, gossip_addr (TCP and UDP), api_addr as in deploy/compose.
EXPOSE 7001 7101 7101/udp 7201
ENTRYPOINT ["/usr/local/bin/bankd"]
CMD ["help"]
