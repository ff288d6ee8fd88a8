/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The Nexmark benchmark's event generator (the event model and generation
 * rules of ../shared/NEXMARK.md): a source operator with three output
 * streams (people, auctions, bids), the same events one at a time as plain
 * values, the options every Nexmark job takes, and a CSV dump of a run.
 *
 * Event n (0-based) is a pure function of (seed, n) and the event rate and
 * base time; parallel subtasks take disjoint parts of the id space, so a run
 * carries exactly the same events at every parallelism and batch size, and
 * a run restored from a checkpoint or savepoint (at any parallelism) carries
 * each of them once.  operators/nexmark.c describes how.
 */
#ifndef WEIR_NEXMARK_H
#define WEIR_NEXMARK_H

#include <stddef.h>
#include <stdint.h>

#include <weir/datastream.h>

#ifdef __cplusplus
extern "C" {
#endif

/* 2015-07-15T00:00:00Z in milliseconds since the Unix epoch. */
#define WEIR_NEXMARK_BASE_TIME_MS 1436918400000LL
#define WEIR_NEXMARK_EVENT_RATE 10000000ULL
/* The watermark the source emits trails the greatest date_time it has
 * emitted by this much (Flink's suite: bounded out-of-orderness of 4 s). */
#define WEIR_NEXMARK_WATERMARK_DELAY_MS 4000

/*
 * A run of the generator.  Zero fields take their defaults, so
 * `weir_nexmark_conf c = { .events = 1000000 };` is a complete
 * configuration (a base time of exactly the epoch cannot be asked for).
 */
typedef struct weir_nexmark_conf {
	uint64_t events;      /* events in all (ids [0, events)); 0 = unbounded */
	uint64_t event_rate;  /* events per second of event time: date_time of
			       * event n is base_time_ms + n * 1000 / event_rate
			       * (default WEIR_NEXMARK_EVENT_RATE) */
	double emit_rate;     /* wall-clock cap in events per second over all
			       * subtasks; 0 = as fast as possible */
	uint32_t ooo_group;   /* out-of-order group size (0 or 1: in order); not
			       * a multiple of 953, below 2^31 */
	uint64_t seed;
	int64_t base_time_ms; /* event time of event 0 (default
			       * WEIR_NEXMARK_BASE_TIME_MS) */
} weir_nexmark_conf;

/* The three event types; the number is also the output port of each
 * stream of weir_source_nexmark (person 0; auction and bid side ports). */
typedef enum weir_nexmark_kind {
	WEIR_NEXMARK_PERSON = 0,
	WEIR_NEXMARK_AUCTION = 1,
	WEIR_NEXMARK_BID = 2,
} weir_nexmark_kind;

/* Schemas of the three streams (for weir_schema_parse, e.g. to read the
 * CSV dump back with weir_source_csv), and their column numbers. */
#define WEIR_NEXMARK_PERSON_SCHEMA                                              \
	"id:i64,name:str,email_address:str,credit_card:str,city:str,state:str," \
	"date_time:ts,extra:str"
#define WEIR_NEXMARK_AUCTION_SCHEMA                                             \
	"id:i64,item_name:str,description:str,initial_bid:i64,reserve:i64,"     \
	"date_time:ts,expires:ts,seller:i64,category:i64,extra:str"
#define WEIR_NEXMARK_BID_SCHEMA                                                 \
	"auction:i64,bidder:i64,price:i64,channel:str,url:str,date_time:ts,"    \
	"extra:str"

enum weir_nexmark_person_col {
	WEIR_PERSON_ID, WEIR_PERSON_NAME, WEIR_PERSON_EMAIL_ADDRESS,
	WEIR_PERSON_CREDIT_CARD, WEIR_PERSON_CITY, WEIR_PERSON_STATE,
	WEIR_PERSON_DATE_TIME, WEIR_PERSON_EXTRA,
};
enum weir_nexmark_auction_col {
	WEIR_AUCTION_ID, WEIR_AUCTION_ITEM_NAME, WEIR_AUCTION_DESCRIPTION,
	WEIR_AUCTION_INITIAL_BID, WEIR_AUCTION_RESERVE, WEIR_AUCTION_DATE_TIME,
	WEIR_AUCTION_EXPIRES, WEIR_AUCTION_SELLER, WEIR_AUCTION_CATEGORY,
	WEIR_AUCTION_EXTRA,
};
enum weir_nexmark_bid_col {
	WEIR_BID_AUCTION, WEIR_BID_BIDDER, WEIR_BID_PRICE, WEIR_BID_CHANNEL,
	WEIR_BID_URL, WEIR_BID_DATE_TIME, WEIR_BID_EXTRA,
};

/*
 * Add the Nexmark source `name` (NULL: "nexmark") to env: one operator
 * whose port 0 carries people and whose side ports carry auctions and
 * bids, with the schemas above; each batch's event time (ts) is the
 * event's date_time.  It returns the person stream, like every source its
 * first stream; weir_nexmark_stream gives each kind's.  A stream nobody
 * consumes is not generated.
 *
 * Parallel subtasks deal the emission order out in blocks of batch-size
 * events, round-robin, so event time advances evenly on every subtask.
 * Each subtask emits, after each batch it makes, the watermark "greatest
 * date_time emitted so far minus WEIR_NEXMARK_WATERMARK_DELAY_MS" on all
 * three streams (an out-of-order group spanning more than that much event
 * time makes late events, as in Flink's suite).  Bounded when
 * conf->events > 0.  The position in the id space is checkpointed; a
 * restore refuses a checkpoint taken with other events, event rate, ooo
 * group, seed or base time.  weir_source_set_rate also applies (the
 * tighter cap holds).
 *
 * Returns the person stream, or NULL (bad configuration, env NULL, out of
 * memory) with the reason in weir_env_error(env).  The configuration is
 * copied.  Build thread only.
 */
WEIR_API weir_stream *weir_source_nexmark(weir_env *env, const char *name,
					  const weir_nexmark_conf *conf);

/* The stream of events of `kind` of the Nexmark source `source` (the
 * stream weir_source_nexmark returned).  NULL if source is not one. */
WEIR_API weir_stream *weir_nexmark_stream(weir_stream *source, weir_nexmark_kind kind);

/* ---- one event as plain values ------------------------------------------------ */

/* Strings are NUL-terminated; the array sizes bound what the rules of
 * NEXMARK.md can make. */
typedef struct weir_nexmark_person {
	int64_t id;
	char name[16];
	char email_address[16];
	char credit_card[20];
	char city[16];
	char state[4];
	int64_t date_time;
	char extra[184];
} weir_nexmark_person;

typedef struct weir_nexmark_auction {
	int64_t id;
	char item_name[20];
	char description[100];
	int64_t initial_bid;
	int64_t reserve;
	int64_t date_time;
	int64_t expires;
	int64_t seller;
	int64_t category;
	char extra[544];
} weir_nexmark_auction;

typedef struct weir_nexmark_bid {
	int64_t auction;
	int64_t bidder;
	int64_t price;
	char channel[16];
	char url[80];
	int64_t date_time;
	char extra[84];
} weir_nexmark_bid;

typedef struct weir_nexmark_row {
	uint64_t id;            /* the event's number n */
	weir_nexmark_kind kind; /* which member of the union is set */
	union {
		weir_nexmark_person person;
		weir_nexmark_auction auction;
		weir_nexmark_bid bid;
	};
} weir_nexmark_row;

/*
 * Event number `id` of the run conf describes, exactly as the source emits
 * it (conf->events and emit_rate do not matter: ids past a bounded run's
 * end are defined too).  Slower than the source per event (no string
 * pool; see nexmark.c) but allocation-free and thread-safe.  0, or -EINVAL
 * for a bad configuration.
 */
WEIR_API int weir_nexmark_event(const weir_nexmark_conf *conf, uint64_t id,
		       weir_nexmark_row *out);

/*
 * The emission order: the id of the event at position `pos` (positions are
 * what subtasks split), i.e. (pos div g) * g + (pos * 953 mod g) for an
 * ooo_group g > 1, else pos.  A bounded run of N events covers positions
 * [0, N rounded up to a multiple of g) and skips those whose id is >= N,
 * for which this returns UINT64_MAX: a bounded run is the unbounded run's
 * order restricted to ids below N.  Pure.
 */
WEIR_API uint64_t weir_nexmark_id_at(const weir_nexmark_conf *conf, uint64_t pos);

/* ---- the options every Nexmark job takes -------------------------------------- */

/*
 * Parse and remove the generator options from a job's argv (argv[0] is
 * kept, "--" ends the scan): --events N, --event-rate R (events per second
 * of event time), --emit-rate R (events per wall-clock second; 0 = as fast
 * as possible), --ooo-group G and --seed S, as "--opt VALUE" or
 * "--opt=VALUE".  Options not given keep their value in *c (so set
 * defaults first).  The remaining arguments keep their order; *argc is
 * updated and argv[*argc] set to NULL.  0, or -EINVAL with a message
 * naming the option and the bad value in err (argv is then unchanged).
 */
#define WEIR_NEXMARK_OPTIONS_HELP                                              \
	"  --events N       events in all (default: unbounded)\n"             \
	"  --event-rate R   events per second of event time (10000000)\n"     \
	"  --emit-rate R    events per wall-clock second over all subtasks\n" \
	"                   (default: as fast as possible)\n"                 \
	"  --ooo-group G    emit events out of order in groups of G (1)\n"    \
	"  --seed S         random seed (0)\n"
WEIR_API int weir_nexmark_options(int *argc, char **argv, weir_nexmark_conf *c,
			 char *err, size_t errlen);

/*
 * Write a bounded run (conf->events > 0) as CSV into directory `dir`
 * (created with its parents if missing): person.csv, auction.csv and
 * bid.csv, each with a header line and the columns in schema order,
 * timestamps as integer milliseconds, strings quoted only when they hold a
 * comma, a quote or a line end (RFC 4180), rows in emission order.  0, or
 * -errno with a message naming the file in err.  Any thread; allocates.
 */
WEIR_API int weir_nexmark_write_csv(const weir_nexmark_conf *conf, const char *dir,
			   char *err, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
