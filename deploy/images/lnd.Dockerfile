# bankd/lnd: lnd and lncli (built with the RPC sub-servers bankd's pool uses) for the pool
# nodes of deploy/compose.
FROM scratch
COPY rootfs/ /
COPY --chown=65532:65532 data/ /var/lib/lnd/
USER 65532:65532
ENV HOME=/var/lib/lnd
WORKDIR /var/lib/lnd
# --lnddir: wallet, channel state, tls.cert and the macaroons bankd reads.
VOLUME ["/var/lib/lnd"]
# P2P and gRPC.
EXPOSE 9735 10009
ENTRYPOINT ["/usr/local/bin/lnd"]
