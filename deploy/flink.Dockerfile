# The Flink cluster of docker-compose.yml: the official image at the version PyFlink uses
# (apache-flink 2.3.0, Java 17, as the harvester's image), running as uid 10001.
#
# No Python is added: the continuous job is pure Flink SQL (filesystem source, JSON formats, the
# built-in functions; see flink_jobs/streaming.py), submitted as a Java job graph, so nothing
# Python runs on the task managers and the flink-python jar is not needed. A Python UDF in your
# own flink.statements would need Python and apache-flink==2.3.0 here.
#
# Why another uid: the harvester (uid 10001 in ../Dockerfile) makes the log, the checkpoint and
# the data folders 0700, and the job must read the log and write acks, checkpoints and sink files
# into them, while the harvester removes acks and old checkpoints. One uid on both sides keeps
# those folders private instead of opening them to a shared group.
FROM flink:2.3.0-java17

USER root
# The entrypoint rewrites conf/config.yaml at start and Flink writes log/: the new user owns
# those two; everything else in /opt/flink is world-readable already. /pipeline is the mount
# point of the shared volume, owned by the same uid so that a fresh volume starts writable.
RUN useradd --uid 10001 --gid flink --home-dir /opt/flink --no-create-home \
      --shell /usr/sbin/nologin harvester \
 && mkdir -p /opt/flink/log /pipeline \
 && chown -R harvester:flink /opt/flink/conf /opt/flink/log /pipeline
USER harvester
