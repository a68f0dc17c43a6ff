# termcell probe image: the static probe binary and the sandbox's user, nothing else.
# Build context: the probe binary (as `probe`), passwd and group from docker/.
FROM scratch
COPY probe /probe
COPY passwd /etc/passwd
COPY group /etc/group
USER 1000:1000
ENTRYPOINT ["/probe"]
