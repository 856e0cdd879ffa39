# bankd/btcd: btcd and btcctl for the regtest chain of deploy/compose (not for mainnet: the
# compose file runs it with --regtest and a generated RPC password).
FROM scratch
COPY rootfs/ /
COPY --chown=65532:65532 data/ /var/lib/btcd/
USER 65532:65532
ENV HOME=/var/lib/btcd
WORKDIR /var/lib/btcd
# Chain, logs, and the RPC certificate btcd makes at its first start (rpc.cert, rpc.key).
VOLUME ["/var/lib/btcd"]
# regtest P2P and RPC.
EXPOSE 18444 18334
ENTRYPOINT ["/usr/local/bin/btcd"]
