# termcell sandbox image: a static busybox, a non-root user, nothing else.
# Built by docker/build-image.sh from a context holding busybox, passwd and group.
FROM scratch
COPY busybox /bin/busybox
COPY passwd /etc/passwd
COPY group /etc/group
# RUN works on scratch only once busybox is in place; applet links are made at build time.
RUN ["/bin/busybox", "--install", "-s", "/bin"]
# Mount points for the tmpfs mounts (the root filesystem is read-only at run time) and
# the home directory; strip any setuid/setgid bit that could have slipped in.
RUN ["/bin/busybox", "sh", "-c", "mkdir -p /tmp /run /home/user/.ably && chmod 1777 /tmp && chmod 0755 /run && chown -R 1000:1000 /home/user && chmod 0700 /home/user/.ably && chmod 0755 /bin/busybox && chmod 0644 /etc/passwd /etc/group && find / -xdev -perm /6000 -type f -exec chmod ug-s {} +"]
USER 1000:1000
WORKDIR /home/user
ENV HOME=/home/user PATH=/bin
CMD ["/bin/sh"]
