"""Checks backend/template.yaml for what issue 5 and DESIGN.md require of the AWS deployment.

Run by scripts/test.sh with the cfn-lint 1.53.3 virtual environment's Python (its YAML decoder
reads the CloudFormation tags: !GetAtt, !Ref, !Sub):

    python -m unittest discover -s backend/tests/template -v

`template_problems` lists every requirement the template misses; the tests assert that the real
template has none, and that each requirement is really checked: a copy with that part removed
must be reported.
"""

import copy
import pathlib
import unittest

from cfnlint.decode import decode

TEMPLATE = pathlib.Path(__file__).resolve().parents[2] / "template.yaml"
FUNCTIONS = {
    "IngestFunction": "tributary-ingest",
    "IngestManagedFunction": "tributary-ingest",
    "RouterFunction": "tributary-router",
    "ConnectorFunction": "tributary-connector",
}
# The ingest's two deployments, one of which exists (opposite conditions): each with its API.
INGEST_VARIANTS = {
    "IngestFunction": ("IngestOnDemand", "IngestApi"),
    "IngestManagedFunction": ("IngestOnManagedInstances", "IngestManagedApi"),
}


def load():
    template, matches = decode(str(TEMPLATE))
    if matches:
        raise AssertionError(f"{TEMPLATE} does not decode: {matches}")
    return template


def ref_target(value):
    """The logical id a !Ref or !GetAtt points to, else None."""
    if isinstance(value, dict):
        if "Ref" in value:
            return value["Ref"]
        if "Fn::GetAtt" in value:
            target = value["Fn::GetAtt"]
            if isinstance(target, str):
                return target.split(".", 1)[0]
            return target[0]
    return None


def resources_of(template, kind):
    return {
        name: resource
        for name, resource in template.get("Resources", {}).items()
        if resource.get("Type") == kind
    }


def template_problems(template):
    problems = []
    resources = template.get("Resources", {})
    globals_ = template.get("Globals", {}).get("Function", {})

    def function_setting(function, key):
        return function.get("Properties", {}).get(key, globals_.get(key))

    if template.get("Transform") != "AWS::Serverless-2016-10-31":
        problems.append("not a SAM template")

    # The three functions: the build method, the runtime, arm64, an alias, one role each.
    roles = {}
    for name, binary in FUNCTIONS.items():
        function = resources.get(name)
        if not function or function.get("Type") != "AWS::Serverless::Function":
            problems.append(f"{name}: missing")
            continue
        metadata = function.get("Metadata", {})
        if metadata.get("BuildMethod") != "rust-cargolambda":
            problems.append(f"{name}: BuildMethod is not rust-cargolambda")
        if metadata.get("BuildProperties", {}).get("Binary") != binary:
            problems.append(f"{name}: does not build the {binary} binary")
        if function_setting(function, "Runtime") != "provided.al2023":
            problems.append(f"{name}: runtime is not provided.al2023")
        if function_setting(function, "Architectures") != ["arm64"]:
            problems.append(f"{name}: not arm64")
        if not function_setting(function, "AutoPublishAlias"):
            problems.append(f"{name}: no AutoPublishAlias")
        role = ref_target(function.get("Properties", {}).get("Role"))
        if role is None or resources.get(role, {}).get("Type") != "AWS::IAM::Role":
            problems.append(f"{name}: no role of its own (Role must point to an AWS::IAM::Role)")
        else:
            roles.setdefault(role, []).append(name)
    for role, users in roles.items():
        # The ingest's variants never exist together: they may share one role.
        if len(users) > 1 and set(users) != set(INGEST_VARIANTS):
            problems.append(f"{role}: shared by {', '.join(users)}; one role per function")
        problems.extend(least_privilege_problems(role, resources[role]))

    # The ingest: the REST API, with every body passed as binary (gzip intact).
    apis = resources_of(template, "AWS::Serverless::Api")
    if not apis:
        problems.append("no REST API (AWS::Serverless::Api)")
    for name, api in apis.items():
        if "*~1*" not in api.get("Properties", {}).get("BinaryMediaTypes", []):
            problems.append(f"{name}: BinaryMediaTypes lacks */* (gzip bodies would be mangled)")
    conditions = template.get("Conditions", {})
    for name, (condition, api) in INGEST_VARIANTS.items():
        function = resources.get(name, {})
        ingest_events = function.get("Properties", {}).get("Events", {})
        paths = {
            event.get("Properties", {}).get("Path")
            for event in ingest_events.values()
            if ref_target(event.get("Properties", {}).get("RestApiId")) == api
        }
        for path in ("/v1/batch", "/v1/event"):
            if path not in paths:
                problems.append(f"{name}: no API event on {api} for {path}")
        if function.get("Condition") != condition or condition not in conditions:
            problems.append(f"{name}: not under the condition {condition}")
        if resources.get(api, {}).get("Condition") != condition:
            problems.append(f"{api}: not under the condition {condition}")
    # The two conditions must be each other's negation on the same parameter.
    on_demand = conditions.get("IngestOnDemand")
    if conditions.get("IngestOnManagedInstances") != {"Fn::Not": [on_demand]}:
        problems.append("IngestOnManagedInstances is not the negation of IngestOnDemand")
    # On Managed Instances: a capacity provider in the given subnets, and requests served
    # several at once (what lets them share Kinesis records).
    managed = resources.get("IngestManagedFunction", {}).get("Properties", {})
    capacity = managed.get("CapacityProviderConfig", {})
    provider = resources.get(ref_target(capacity.get("Arn")), {})
    if provider.get("Type") != "AWS::Serverless::CapacityProvider":
        problems.append("IngestManagedFunction: no capacity provider of the template")
    elif "SubnetIds" not in provider.get("Properties", {}).get("VpcConfig", {}):
        problems.append("IngestCapacityProvider: no subnets")
    concurrency = capacity.get("PerExecutionEnvironmentMaxConcurrency")
    if ref_target(concurrency) not in template.get("Parameters", {}):
        problems.append("IngestManagedFunction: PerExecutionEnvironmentMaxConcurrency is not a parameter")

    # The stream, sized by a parameter, and its Firehose backup to S3.
    streams = resources_of(template, "AWS::Kinesis::Stream")
    if len(streams) != 1:
        problems.append("not exactly one Kinesis stream")
    for name, stream in streams.items():
        if ref_target(stream.get("Properties", {}).get("ShardCount")) not in template.get(
            "Parameters", {}
        ):
            problems.append(f"{name}: ShardCount is not a parameter")
    firehoses = resources_of(template, "AWS::KinesisFirehose::DeliveryStream")
    backed_up = False
    for firehose in firehoses.values():
        properties = firehose.get("Properties", {})
        source = properties.get("KinesisStreamSourceConfiguration", {})
        target = properties.get("ExtendedS3DestinationConfiguration", {})
        if ref_target(source.get("KinesisStreamARN")) in streams and ref_target(
            target.get("BucketARN")
        ) in resources_of(template, "AWS::S3::Bucket"):
            backed_up = True
    if not backed_up:
        problems.append("no Firehose delivery stream from the Kinesis stream to S3")

    # The router's event-source mapping.
    router = resources.get("RouterFunction", {}).get("Properties", {})
    kinesis_events = [
        event.get("Properties", {})
        for event in router.get("Events", {}).values()
        if event.get("Type") == "Kinesis"
    ]
    if len(kinesis_events) != 1:
        problems.append("RouterFunction: not exactly one Kinesis event source")
    for mapping in kinesis_events:
        if ref_target(mapping.get("Stream")) not in streams:
            problems.append("router mapping: not on the stream")
        if mapping.get("StartingPosition") not in ("TRIM_HORIZON", "LATEST", "AT_TIMESTAMP"):
            problems.append("router mapping: no StartingPosition")
        if not isinstance(mapping.get("BatchSize"), int) or mapping["BatchSize"] < 2:
            problems.append("router mapping: BatchSize missing or 1 (one invoke per record)")
        window = mapping.get("MaximumBatchingWindowInSeconds")
        if not isinstance(window, int) and ref_target(window) not in template.get("Parameters", {}):
            problems.append("router mapping: no MaximumBatchingWindowInSeconds")
        if mapping.get("BisectBatchOnFunctionError") is not True:
            problems.append("router mapping: BisectBatchOnFunctionError is not true")
        if "ReportBatchItemFailures" not in mapping.get("FunctionResponseTypes", []):
            problems.append("router mapping: no ReportBatchItemFailures")
        retries = mapping.get("MaximumRetryAttempts")
        if not isinstance(retries, int) or not 0 <= retries <= 10000:
            problems.append("router mapping: MaximumRetryAttempts missing or infinite")
        age = mapping.get("MaximumRecordAgeInSeconds")
        if not isinstance(age, int) or not 60 <= age <= 604800:
            problems.append("router mapping: MaximumRecordAgeInSeconds missing or infinite")
        on_failure = mapping.get("DestinationConfig", {}).get("OnFailure", {})
        target = ref_target(on_failure.get("Destination"))
        if resources.get(target, {}).get("Type") != "AWS::S3::Bucket":
            problems.append("router mapping: the on-failure destination is not an S3 bucket")
    rules_bucket = router.get("Environment", {}).get("Variables", {}).get("TRIBUTARY_RULES_BUCKET")
    if resources.get(ref_target(rules_bucket), {}).get("Type") != "AWS::S3::Bucket":
        problems.append("RouterFunction: TRIBUTARY_RULES_BUCKET is not the rules bucket")
    problems.extend(queue_variable_problems(resources, router, "TRIBUTARY_ROUTER_DLQ_URL"))
    # Issue 9: the suppression list beside the rules, readable by the router (and the
    # connector), with ListBucket so that a list not uploaded yet is a 404, not a 403.
    for function in ("RouterFunction", "ConnectorFunction"):
        properties = resources.get(function, {}).get("Properties", {})
        key = properties.get("Environment", {}).get("Variables", {}).get(
            "TRIBUTARY_SUPPRESSIONS_KEY"
        )
        if not key:
            problems.append(f"{function}: no TRIBUTARY_SUPPRESSIONS_KEY")
            continue
        role = resources.get(ref_target(properties.get("Role")), {})
        if not role_allows(role, "s3:GetObject", f"/{key}"):
            problems.append(f"{function}: its role cannot read the suppression list {key}")
        if not role_allows(role, "s3:ListBucket", None):
            problems.append(f"{function}: its role cannot list the rules bucket (403, not 404)")

    # The connector: its own DLQ, the async-invoke DLQ, and its queue's RedrivePolicy.
    connector = resources.get("ConnectorFunction", {}).get("Properties", {})
    problems.extend(queue_variable_problems(resources, connector, "TRIBUTARY_CONNECTOR_DLQ_URL"))
    dead_letter = connector.get("DeadLetterQueue", {})
    async_failure = (
        connector.get("EventInvokeConfig", {}).get("DestinationConfig", {}).get("OnFailure", {})
    )
    if not (
        dead_letter.get("Type") == "SQS"
        and is_queue(resources, ref_target(dead_letter.get("TargetArn")))
    ) and not is_queue(resources, ref_target(async_failure.get("Destination"))):
        problems.append("ConnectorFunction: no DLQ for asynchronous invokes")
    max_async_retries = connector.get("EventInvokeConfig", {}).get("MaximumRetryAttempts")
    if max_async_retries not in (0, 1, 2):
        problems.append("ConnectorFunction: EventInvokeConfig.MaximumRetryAttempts not set")
    sqs_events = [
        event.get("Properties", {})
        for event in connector.get("Events", {}).values()
        if event.get("Type") == "SQS"
    ]
    if not sqs_events:
        problems.append("ConnectorFunction: no SQS event source")
    for source in sqs_events:
        queue_name = ref_target(source.get("Queue"))
        queue = resources.get(queue_name, {})
        redrive = queue.get("Properties", {}).get("RedrivePolicy", {})
        if not is_queue(resources, ref_target(redrive.get("deadLetterTargetArn"))):
            problems.append(f"{queue_name}: no RedrivePolicy to a DLQ")
        if "ReportBatchItemFailures" not in source.get("FunctionResponseTypes", []):
            problems.append("ConnectorFunction: SQS source without ReportBatchItemFailures")

    # The rules bucket, the dashboard, and the alarms.
    if not resources_of(template, "AWS::CloudWatch::Dashboard"):
        problems.append("no CloudWatch dashboard")
    alarms = resources_of(template, "AWS::CloudWatch::Alarm").values()
    metrics = {alarm.get("Properties", {}).get("MetricName") for alarm in alarms}
    if "IteratorAge" not in metrics and "GetRecords.IteratorAgeMilliseconds" not in metrics:
        problems.append("no alarm on iterator age")
    watched_queues = {
        ref_target(dimension.get("Value"))
        for alarm in alarms
        if alarm.get("Properties", {}).get("MetricName") == "ApproximateNumberOfMessagesVisible"
        for dimension in alarm.get("Properties", {}).get("Dimensions", [])
    }
    for queue in dead_letter_queues(resources):
        if queue not in watched_queues:
            problems.append(f"{queue}: no alarm on its depth")

    parameters = template.get("Parameters", {})
    for parameter in ("ShardCount", "ConnectorDestination", "ConnectorConfig"):
        if parameter not in parameters:
            problems.append(f"no {parameter} parameter")
    return problems


def role_allows(role, action, resource_suffix):
    """Whether a statement of the role's policies allows `action` on a resource ending with
    `resource_suffix` (any resource when None)."""
    for policy in role.get("Properties", {}).get("Policies", []):
        for statement in policy.get("PolicyDocument", {}).get("Statement", []):
            actions = statement.get("Action")
            actions = actions if isinstance(actions, list) else [actions]
            if action not in actions or statement.get("Effect") != "Allow":
                continue
            if resource_suffix is None:
                return True
            resources = statement.get("Resource")
            resources = resources if isinstance(resources, list) else [resources]
            for resource in resources:
                text = resource.get("Fn::Sub", "") if isinstance(resource, dict) else resource
                if isinstance(text, str) and text.endswith(resource_suffix):
                    return True
    return False


def is_queue(resources, name):
    return resources.get(name, {}).get("Type") == "AWS::SQS::Queue"


def dead_letter_queues(resources):
    """Every queue a function writes dead letters to, or a RedrivePolicy points to."""
    queues = set()
    for resource in resources.values():
        properties = resource.get("Properties", {})
        variables = properties.get("Environment", {}).get("Variables", {})
        for key, value in variables.items():
            if key.endswith("_DLQ_URL"):
                queues.add(ref_target(value))
        queues.add(ref_target(properties.get("DeadLetterQueue", {}).get("TargetArn")))
        queues.add(ref_target(properties.get("RedrivePolicy", {}).get("deadLetterTargetArn")))
    return {queue for queue in queues if is_queue(resources, queue)}


def queue_variable_problems(resources, function, variable):
    value = function.get("Environment", {}).get("Variables", {}).get(variable)
    if not is_queue(resources, ref_target(value)):
        return [f"{variable} does not name an SQS queue of the template"]
    return []


def least_privilege_problems(name, role):
    problems = []
    for policy in role.get("Properties", {}).get("Policies", []):
        for statement in policy.get("PolicyDocument", {}).get("Statement", []):
            actions = statement.get("Action")
            actions = actions if isinstance(actions, list) else [actions]
            for action in actions:
                if action == "*" or str(action).endswith(":*"):
                    problems.append(f"{name}: wildcard action {action}")
            if statement.get("Resource") == "*" and not statement.get("Condition"):
                allowed = {"kinesis:ListStreams"}
                if not set(actions) <= allowed:
                    problems.append(f"{name}: {actions} on every resource without a condition")
    for managed in role.get("Properties", {}).get("ManagedPolicyArns", []):
        if "AdministratorAccess" in str(managed) or "FullAccess" in str(managed):
            problems.append(f"{name}: broad managed policy {managed}")
    return problems


class TemplateTest(unittest.TestCase):
    def test_the_template_has_everything_required(self):
        self.assertEqual(template_problems(load()), [])

    def test_each_requirement_is_checked(self):
        def without(path):
            template = load()
            node = template
            for key in path[:-1]:
                node = node[key]
            del node[path[-1]]
            return template

        router_stream = ["Resources", "RouterFunction", "Properties", "Events", "Stream"]
        mapping = router_stream + ["Properties"]
        connector = ["Resources", "ConnectorFunction", "Properties"]
        cases = {
            "on-failure destination": mapping + ["DestinationConfig"],
            "bisect": mapping + ["BisectBatchOnFunctionError"],
            "partial batch responses": mapping + ["FunctionResponseTypes"],
            "retry limit": mapping + ["MaximumRetryAttempts"],
            "record age limit": mapping + ["MaximumRecordAgeInSeconds"],
            "starting position": mapping + ["StartingPosition"],
            "batching window": mapping + ["MaximumBatchingWindowInSeconds"],
            "connector async DLQ": connector + ["DeadLetterQueue"],
            "connector queue redrive policy": [
                "Resources",
                "ConnectorQueue",
                "Properties",
                "RedrivePolicy",
            ],
            "router DLQ variable": [
                "Resources",
                "RouterFunction",
                "Properties",
                "Environment",
                "Variables",
                "TRIBUTARY_ROUTER_DLQ_URL",
            ],
            "binary media types": [
                "Resources",
                "IngestApi",
                "Properties",
                "BinaryMediaTypes",
            ],
            "suppression list variable": [
                "Resources",
                "RouterFunction",
                "Properties",
                "Environment",
                "Variables",
                "TRIBUTARY_SUPPRESSIONS_KEY",
            ],
            "connector's suppression list permission": [
                "Resources",
                "ConnectorRole",
                "Properties",
                "Policies",
                1,
            ],
            "firehose": ["Resources", "ArchiveDeliveryStream"],
            "dashboard": ["Resources", "Dashboard"],
            "managed ingest's concurrency": [
                "Resources",
                "IngestManagedFunction",
                "Properties",
                "CapacityProviderConfig",
                "PerExecutionEnvironmentMaxConcurrency",
            ],
            "managed ingest's condition": ["Resources", "IngestManagedFunction", "Condition"],
            "managed ingest's API": ["Resources", "IngestManagedApi", "Condition"],
            "capacity provider": ["Resources", "IngestCapacityProvider"],
            "DLQ depth alarm": ["Resources", "ConnectorDeadLetterQueueDepthAlarm"],
        }
        for case, path in cases.items():
            with self.subTest(case):
                self.assertNotEqual(template_problems(without(path)), [], case)

        shared = load()
        shared["Resources"]["ConnectorFunction"]["Properties"]["Role"] = copy.deepcopy(
            shared["Resources"]["RouterFunction"]["Properties"]["Role"]
        )
        self.assertIn(
            "RouterRole: shared by RouterFunction, ConnectorFunction; one role per function",
            template_problems(shared),
        )

        broad = load()
        broad["Resources"]["IngestRole"]["Properties"]["Policies"][0]["PolicyDocument"][
            "Statement"
        ][0]["Action"] = "kinesis:*"
        self.assertIn("IngestRole: wildcard action kinesis:*", template_problems(broad))

        one_at_a_time = load()
        for event in one_at_a_time["Resources"]["RouterFunction"]["Properties"]["Events"].values():
            event["Properties"]["BatchSize"] = 1
        self.assertIn(
            "router mapping: BatchSize missing or 1 (one invoke per record)",
            template_problems(one_at_a_time),
        )

    def test_sam_transforms_the_template(self):
        """cfn-lint's SAM pass misses some of SAM's own errors (two functions on one API path
        passed it); the translator itself must accept the template."""
        import json
        import os

        import boto3
        from samtranslator.parser import parser
        from samtranslator.translator.translator import Translator

        template = json.loads(json.dumps(load()))
        template["Globals"]["Function"]["CodeUri"] = "s3://bucket/code.zip"
        os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        translated = Translator(
            {}, parser.Parser(), boto_session=boto3.Session(region_name="us-east-1")
        ).translate(sam_template=template, parameter_values={})
        resources = translated["Resources"]
        managed = resources["IngestManagedFunction"]
        self.assertEqual(managed["Condition"], "IngestOnManagedInstances")
        config = managed["Properties"]["CapacityProviderConfig"][
            "LambdaManagedInstancesCapacityProviderConfig"
        ]
        self.assertEqual(config["CapacityProviderArn"], {"Fn::GetAtt": ["IngestCapacityProvider", "Arn"]})
        self.assertEqual(resources["IngestFunction"]["Condition"], "IngestOnDemand")
        self.assertNotIn("CapacityProviderConfig", resources["IngestFunction"]["Properties"])


if __name__ == "__main__":
    unittest.main()
