"""``amikeeper backup INSTANCE``: an on-demand backup, queued like every other backup.

The work item is built by amikeeper.backups.build_work_item (trigger ``manual``, the policy the
instance's tags give, this second as its slot) and sent to the stack's work queue, so the worker makes
it with the same guarantees as a scheduled one: retries, the dead-letter queue, and a deterministic
AMI name, which makes a repeated request within the same second a no-op rather than a second AMI.
"""

from __future__ import annotations

from amikeeper.backups import build_work_item
from amikeeper.gateways.sqs import EnqueueError
from amikeeper.naming import format_slot
from amikeeper.policies import InvalidTag, resolve_policy
from amikeeper_cli import locate
from amikeeper_cli.deployment import Deployment
from amikeeper_cli.errors import BadInput, OperationFailed
from amikeeper_cli.render import Section, View

COLUMNS = ("region", "instance", "policy", "AMI name (when the worker has made it)")
# CreateImage needs an instance EC2 can still image.
IMAGEABLE = frozenset({"pending", "running", "stopping", "stopped"})


def backup(deployment: Deployment, instance_id: str) -> View:
    found = locate.instance(deployment, instance_id)
    if found is None:
        raise BadInput(f"unknown instance {instance_id} in {', '.join(deployment.regions)}")
    instance, stack = found.item, deployment.settings.stack
    if instance.state not in IMAGEABLE:
        raise BadInput(f"{instance_id} is {instance.state}: EC2 can no longer image it")
    try:
        policy = resolve_policy(instance.tags, stack.tag_keys, deployment.catalog)
    except InvalidTag as invalid:
        raise BadInput(f"{instance_id}: {invalid}; fix the tag first") from None
    if policy is None:
        # Retention would treat its backups as those of an instance no longer opted in.
        raise BadInput(f"{instance_id} is not opted in: tag it {stack.tag_keys.opt_in}=true first")
    slot = deployment.now.replace(microsecond=0)
    item = build_work_item(instance, policy, region=found.region, stack=stack, trigger="manual", slot=slot)
    try:
        deployment.queue.send([item])
    except EnqueueError as error:
        raise OperationFailed(str(error)) from None
    document = {
        "queued": True,
        "region": found.region,
        "instance_id": instance_id,
        "policy": policy.name,
        "trigger": item.trigger,
        "slot": format_slot(item.slot),
        "image_name": item.image_name,
    }
    title = f"Backup of {instance_id} queued (trigger manual, slot {document['slot']})"
    return View(
        document=document,
        sections=[Section(title, COLUMNS, [[found.region, instance_id, policy.name, item.image_name]])],
        notes=[f"The worker makes it within a minute: `amikeeper backups {instance_id}` shows it."],
    )
