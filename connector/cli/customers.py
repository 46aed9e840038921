"""``amberflo-connector customers``: list, read, create/update customers and assign plans."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from connector.cli.options import (
    API_EXIT_CODES,
    CONFIG_OPTION,
    api_client,
    api_settings,
    print_json,
    print_table,
    time_option,
)
from connector.errors import FatalError

if TYPE_CHECKING:
    from connector.amberflo import Customer, PlanAssignment

JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print Amberflo's JSON.")
ID_OPTION = click.option("--id", "customer_id", required=True, help="The customer's id.")


class NotFound(FatalError):
    exit_code = 3


def _trait(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    traits = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r}: give key=value")
        traits[key] = value
    return traits


@click.group()
def customers() -> None:
    """Customers and their product plans in Amberflo."""


@customers.command("list", epilog=API_EXIT_CODES)
@CONFIG_OPTION
@JSON_OPTION
def customers_list(config_file: str | None, as_json: bool) -> None:
    """List every customer.

    \b
    Example:
      amberflo-connector customers list --json
    """
    from rich.table import Table

    with api_client(api_settings(config_file)) as client:
        found = client.list_customers()
    if as_json:
        print_json([c.wire() for c in found])
        return
    table = Table("customerId", "name", "email", "enabled", "traits")
    for c in sorted(found, key=lambda c: c.customer_id):
        enabled = "" if c.enabled is None else str(c.enabled).lower()
        traits = ", ".join(f"{k}={v}" for k, v in sorted(c.traits.items()))
        table.add_row(c.customer_id, c.customer_name, c.customer_email or "", enabled, traits)
    print_table(table)
    click.echo(f"{len(found)} customer(s)")


@customers.command(
    "get", epilog=API_EXIT_CODES, short_help="Show a customer and its current product plan."
)
@CONFIG_OPTION
@ID_OPTION
@JSON_OPTION
def customers_get(config_file: str | None, customer_id: str, as_json: bool) -> None:
    """Show one customer and its current product plan (exit 3 when there is no such customer).

    \b
    Example:
      amberflo-connector customers get --id acme
    """
    with api_client(api_settings(config_file)) as client:
        customer = client.get_customer(customer_id)
        if customer is None:
            raise NotFound(f"no customer {customer_id!r} in Amberflo")
        plan = client.current_plan(customer_id)
    if as_json:
        print_json({"customer": customer.wire(), "plan": plan.wire() if plan else None})
        return
    _show(customer, plan)


def _show(customer: Customer, plan: PlanAssignment | None) -> None:
    from connector.timefmt import ms_to_iso

    def when(ms: int | None) -> str:
        return ms_to_iso(ms, "seconds") if ms else "—"

    rows: list[tuple[str, Any]] = [
        ("customerId", customer.customer_id),
        ("name", customer.customer_name),
        ("email", customer.customer_email or "—"),
        ("enabled", "—" if customer.enabled is None else str(customer.enabled).lower()),
        ("created", when(customer.create_time)),
        ("updated", when(customer.update_time)),
    ]
    rows += [(f"trait {k}", v) for k, v in sorted(customer.traits.items())]
    if plan is None:
        rows.append(("plan", "none"))
    else:
        since = when((plan.start_time_in_seconds or 0) * 1000)
        rows.append(("plan", f"{plan.product_plan_id} (product {plan.product_id}, since {since})"))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        click.echo(f"{key:<{width}}  {value}")


@customers.command(
    "upsert", epilog=API_EXIT_CODES, short_help="Create or replace a customer; print what changed."
)
@CONFIG_OPTION
@ID_OPTION
@click.option("--name", required=True, help="customerName.")
@click.option("--email", default=None, help="customerEmail.")
@click.option(
    "--trait", "traits", multiple=True, callback=_trait, metavar="K=V", help="A trait (repeatable)."
)
@click.option(
    "--merge",
    is_flag=True,
    help="Keep the email and the traits the customer already has unless given here (default: "
    "replace, as Amberflo's PUT does: what is not given is dropped).",
)
@JSON_OPTION
def customers_upsert(
    config_file: str | None,
    customer_id: str,
    name: str,
    email: str | None,
    traits: dict[str, str],
    merge: bool,
    as_json: bool,
) -> None:
    """Create the customer, or replace it when it exists; prints what changed.

    \b
    Example:
      amberflo-connector customers upsert --id acme --name "Acme Corp" \\
          --email billing@acme.test --trait tier=gold --trait region=eu
    """
    from connector.amberflo import Customer

    with api_client(api_settings(config_file)) as client:
        before = client.get_customer(customer_id)
        wanted = Customer(
            customer_id=customer_id, customer_name=name, customer_email=email, traits=traits
        )
        if merge and before is not None:
            wanted.customer_email = email or before.customer_email
            wanted.traits = {**before.traits, **traits}
        after = client.upsert_customer(wanted)
    if as_json:
        print_json(after.wire())
        return
    click.echo(_change_line(before, after))


def _change_line(before: Customer | None, after: Customer) -> str:
    if before is None:
        return f"created customer {after.customer_id!r}"
    changes = []
    for label, old, new in (
        ("name", before.customer_name, after.customer_name),
        ("email", before.customer_email, after.customer_email),
    ):
        if old != new:
            changes.append(f"{label} {old!r} → {new!r}")
    for key in sorted(before.traits.keys() | after.traits.keys()):
        old, new = before.traits.get(key), after.traits.get(key)
        if old != new:
            changes.append(f"trait {key} {old!r} → {new!r}")
    if not changes:
        return f"customer {after.customer_id!r} unchanged"
    return f"updated customer {after.customer_id!r}: {'; '.join(changes)}"


@customers.command(
    "plan", epilog=API_EXIT_CODES, short_help="Assign a product plan to a customer, once."
)
@CONFIG_OPTION
@ID_OPTION
@click.option("--plan", "plan_id", required=True, help="productPlanId to assign.")
@click.option("--product-id", default="1", show_default=True, help="productId of the plan.")
@time_option("--start", "When the plan starts: ISO-8601 or epoch ms (default: now).")
@JSON_OPTION
def customers_plan(
    config_file: str | None,
    customer_id: str,
    plan_id: str,
    product_id: str,
    start: int | None,
    as_json: bool,
) -> None:
    """Assign a product plan to a customer, unless it already is its current plan (so
    running it twice assigns once). Exit 3 when there is no such customer.

    \b
    Example:
      amberflo-connector customers plan --id acme --plan premium
    """
    from connector.amberflo import PlanAssignment

    with api_client(api_settings(config_file)) as client:
        if client.get_customer(customer_id) is None:
            raise NotFound(
                f"no customer {customer_id!r} in Amberflo (create it with customers upsert)"
            )
        wanted = PlanAssignment(
            customer_id=customer_id,
            product_plan_id=plan_id,
            product_id=product_id,
            start_time_in_seconds=start // 1000 if start is not None else None,
        )
        current, assigned = client.ensure_plan(wanted)
    if as_json:
        print_json({"assigned": assigned, "plan": current.wire()})
    elif assigned:
        click.echo(f"assigned plan {plan_id!r} to {customer_id!r} (relation {current.relation_id})")
    else:
        click.echo(f"{customer_id!r} is already on plan {plan_id!r}: nothing to do")
