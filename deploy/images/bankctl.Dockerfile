# bankd/bankctl: the command-line client (BANKCTL_ADDR, BANKCTL_CA, BANKCTL_TOKEN).
FROM scratch
COPY rootfs/ /
COPY --chown=65532:65532 data/ /home/bankctl/
USER 65532:65532
ENV HOME=/home/bankctl
WORKDIR /home/bankctl
ENTRYPOINT ["/usr/local/bin/bankctl"]
CMD ["help"]
