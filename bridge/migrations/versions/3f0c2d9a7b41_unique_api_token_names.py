"""unique api token names

Names were unique only by the service's check (``bridge.accounts.api_tokens``), so two concurrent
creations could both write one. A database that already holds such twins keeps every token
working: the oldest keeps the name, each other one gets ``"<name> #<id>"`` (cut to fit 128
characters), which ``token revoke`` can then name.

Revision ID: 3f0c2d9a7b41
Revises: 85b1bc33bff7
Create Date: 2026-12-02 04:10:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '3f0c2d9a7b41'
down_revision = '85b1bc33bff7'
branch_labels = None
depends_on = None

MAX_NAME = 128
api_token = sa.table('api_token', sa.column('id', sa.Integer), sa.column('name', sa.String))


def rename_twins() -> None:
    bind = op.get_bind()
    rows = bind.execute(sa.select(api_token.c.id, api_token.c.name).order_by(api_token.c.id)).all()
    taken = {name for _id, name in rows}
    seen: set[str] = set()
    for token_id, name in rows:
        if name not in seen:
            seen.add(name)
            continue
        new_name, attempt = name, 0
        while new_name in taken:  # "<name> #<id>", then "<name> #<id>.1" if a token has that name
            suffix = f" #{token_id}" + (f".{attempt}" if attempt else "")
            new_name, attempt = name[: MAX_NAME - len(suffix)] + suffix, attempt + 1
        taken.add(new_name)
        bind.execute(sa.update(api_token).where(api_token.c.id == token_id).values(name=new_name))


def upgrade():
    rename_twins()
    with op.batch_alter_table('api_token', schema=None) as batch_op:
        batch_op.create_unique_constraint(batch_op.f('uq_api_token_name'), ['name'])


def downgrade():
    with op.batch_alter_table('api_token', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_api_token_name'), type_='unique')
