"""The reference KPL aggregator and de-aggregator (aws-kinesis-agg, awslabs/kinesis-aggregation)
for the interop tests. Reads JSON on stdin, writes JSON on stdout; data is base64.

  deaggregate: [{"partition_key", "explicit_hash_key", "data"}] (Kinesis records)
            -> [{"source", "partition_key", "explicit_hash_key", "data", "aggregated"}]
  aggregate:   {"max_size", "records": [{"partition_key", "explicit_hash_key", "data"}]}
            -> [{"partition_key", "explicit_hash_key", "data"}] (Kinesis records)
"""
import base64
import json
import sys

from aws_kinesis_agg.aggregator import RecordAggregator
from aws_kinesis_agg.deaggregator import iter_deaggregate_records


def text(value):
    return value.decode("ascii") if isinstance(value, bytes) else value


def deaggregate(records):
    out = []
    for index, record in enumerate(records):
        lambda_record = {
            "kinesis": {
                "kinesisSchemaVersion": "1.0",
                "sequenceNumber": str(index),
                "approximateArrivalTimestamp": 0,
                "partitionKey": record["partition_key"],
                "explicitHashKey": record.get("explicit_hash_key"),
                "data": record["data"],
            }
        }
        for user in iter_deaggregate_records(lambda_record):
            kinesis = user["kinesis"]
            out.append(
                {
                    "source": index,
                    "partition_key": kinesis["partitionKey"],
                    "explicit_hash_key": kinesis.get("explicitHashKey"),
                    "data": text(kinesis["data"]),
                    "aggregated": bool(kinesis.get("aggregated", False)),
                }
            )
    return out


def aggregate(request):
    aggregator = RecordAggregator(max_size=request["max_size"])
    out = []

    def emit(record):
        partition_key, explicit_hash_key, data = record.get_contents()
        out.append(
            {
                "partition_key": text(partition_key),
                "explicit_hash_key": text(explicit_hash_key),
                "data": base64.b64encode(data).decode("ascii"),
            }
        )

    for record in request["records"]:
        full = aggregator.add_user_record(
            record["partition_key"],
            base64.b64decode(record["data"]),
            record.get("explicit_hash_key"),
        )
        if full is not None:
            emit(full)
    last = aggregator.clear_and_get()
    if last is not None:
        emit(last)
    return out


def main():
    mode = sys.argv[1]
    request = json.load(sys.stdin)
    result = deaggregate(request) if mode == "deaggregate" else aggregate(request)
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
