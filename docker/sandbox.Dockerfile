# termcell sandbox image: a busybox, the loader and libraries it needs, termcell's static
# in-container programs, a non-root user, nothing else. Built by `termcell build-image`
# (src/image.rs) from a context holding root/, the image's files: from the host,
# /bin/busybox and, when it is dynamically linked, its loader and libraries; from termcell,
# /usr/local/bin/termcell-rsh (the restricted shell) and /usr/local/bin/termcell-entry
# (the entry program that takes the session's environment), both built by
# docker/build-programs.sh, the restricted shell's /etc/termcell/rsh.conf
# (docker/rsh.conf), /bin/wget (docker/wget), /etc/passwd, /etc/group and
# /etc/nsswitch.conf.
FROM scratch
COPY root/ /
# RUN works on scratch only once busybox is in place; applet links are made at build time
# (--install leaves an existing file alone: /bin/wget stays the script).
RUN ["/bin/busybox", "--install", "-s", "/bin"]
# Mount points for the tmpfs mounts (the root filesystem is read-only at run time) and
# the home directory; strip any setuid/setgid bit that could have slipped in. The copied
# files already have their modes from the context (a chmod here would copy them up into
# a second layer).
RUN ["/bin/busybox", "sh", "-c", "mkdir -p /tmp /run /home/user/.ably && chmod 1777 /tmp && chmod 0755 /run && chown -R 1000:1000 /home/user && chmod 0700 /home/user/.ably && find / -xdev -perm /6000 -type f -exec chmod ug-s {} +"]
USER 1000:1000
WORKDIR /home/user
ENV HOME=/home/user PATH=/bin
CMD ["/bin/sh"]
