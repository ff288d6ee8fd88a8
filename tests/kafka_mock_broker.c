/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kafka_mock_broker: a Kafka cluster for tests and demos, librdkafka's mock
 * cluster (rdkafka_mock.h), which speaks the Kafka protocol over TCP on
 * loopback.  No Kafka broker can be installed on these machines.
 *
 *   kafka_mock_broker [--brokers N] [--partitions P] [--topic NAME]...
 *
 * prints `bootstrap=HOST:PORT[,HOST:PORT...]` as its first line on stdout
 * (a contract: scripts read it), then serves other processes until SIGTERM
 * or SIGINT.  Topics named with --topic are created at once with P
 * partitions (default 4); a topic first named by a client is created by
 * the mock itself, always with 4 partitions (librdkafka 2.0 has no setting
 * for that).  Known limit of the mock: a read_committed consumer also sees
 * the messages of aborted transactions (see the README).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: kafka_mock_broker [--brokers N] [--partitions P] [--topic NAME]...\n"
		   "Starts librdkafka's mock Kafka cluster on loopback, prints\n"
		   "'bootstrap=HOST:PORT[,...]' as its first line and serves until SIGTERM.\n");
}

static int positive(const char *flag, const char *s, int max)
{
	char *end;
	long v = strtol(s, &end, 10);
	if (*s == 0 || *end || v < 1 || v > max) {
		fprintf(stderr, "kafka_mock_broker: %s: '%s' is not an integer from 1 to %d\n",
			flag, s, max);
		exit(2);
	}
	return (int)v;
}

int main(int argc, char **argv)
{
	int brokers = 1, partitions = 4, ntopics = 0;
	const char **topics = calloc((size_t)argc, sizeof(*topics));
	char err[512];

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--brokers") && i + 1 < argc)
			brokers = positive("--brokers", argv[++i], 64);
		else if (!strcmp(argv[i], "--partitions") && i + 1 < argc)
			partitions = positive("--partitions", argv[++i], 10000);
		else if (!strcmp(argv[i], "--topic") && i + 1 < argc)
			topics[ntopics++] = argv[++i];
		else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			usage(stdout);
			return 0;
		} else {
			fprintf(stderr, "kafka_mock_broker: unknown argument '%s'\n", argv[i]);
			usage(stderr);
			return 2;
		}
	}
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	if (rd_kafka_conf_set(conf, "log_level", "3", err, sizeof(err)) != RD_KAFKA_CONF_OK) {
		fprintf(stderr, "kafka_mock_broker: %s\n", err);
		return 1;
	}
	/* The mock cluster lives in a client instance (it needs one's threads). */
	rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
	if (!rk) {
		fprintf(stderr, "kafka_mock_broker: %s\n", err);
		return 1;
	}
	rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, brokers);
	if (!mc) {
		fprintf(stderr, "kafka_mock_broker: could not start a mock cluster of %d brokers\n",
			brokers);
		rd_kafka_destroy(rk);
		return 1;
	}
	for (int i = 0; i < ntopics; i++) {
		rd_kafka_resp_err_t e = rd_kafka_mock_topic_create(mc, topics[i], partitions,
								   brokers < 3 ? brokers : 3);
		if (e) {
			fprintf(stderr, "kafka_mock_broker: topic '%s': %s\n", topics[i],
				rd_kafka_err2str(e));
			return 1;
		}
	}
	struct sigaction sa = { .sa_handler = on_signal };
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	printf("bootstrap=%s\n", rd_kafka_mock_cluster_bootstraps(mc));
	fflush(stdout);
	while (!stop)
		pause();
	rd_kafka_mock_cluster_destroy(mc);
	rd_kafka_destroy(rk);
	free(topics);
	return 0;
}
