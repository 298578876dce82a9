"""The ``undo`` batch operation (CONTRACT.md §11): remove the users an import created that
nobody has changed since (their fingerprint, ``bridge.accounts.user_fingerprint``, is still the
one the import recorded). Users changed since are kept and counted ``unchanged`` (the undo left
them alone); CRM contacts are never touched. A page takes the import's created items in order
(the cursor is the last item id), so an undo can be killed and resumed like any batch."""

from __future__ import annotations

from sqlalchemy import select

from bridge.accounts.user_fingerprint import fingerprints
from bridge.delivery.batches import PAGE_SIZE, ItemResult, PageContext, PageWork, batch_operation
from bridge.extensions import db
from bridge.models import Batch, BatchItem, User


@batch_operation("undo")
def undo_page(page: PageContext) -> PageWork:
    target = int(page.params["undoes"])
    after = int(page.cursor or 0)
    created = (BatchItem.batch_id == target) & (BatchItem.outcome == "created")
    work = PageWork()
    if page.cursor is None:
        work.total = db.session.scalar(select(Batch.created).where(Batch.id == target))
    rows = db.session.execute(
        select(BatchItem.id, BatchItem.user_id, BatchItem.fingerprint)
        .where(created, BatchItem.id > after)
        .order_by(BatchItem.id)
        .limit(PAGE_SIZE)
    ).all()
    current = fingerprints(row.user_id for row in rows if row.user_id)
    remove: list[int] = []
    for row in rows:
        key = f"user:{row.user_id}"
        now = current.get(row.user_id or 0)
        if now is None:
            work.items.append(ItemResult(key, "unchanged", row.user_id, None))  # already gone
        elif row.fingerprint and now == row.fingerprint:
            remove.append(int(row.user_id))
            work.items.append(ItemResult(key, "removed", row.user_id))
        else:
            work.items.append(ItemResult(key, "unchanged", row.user_id))
    if remove:
        # ORM deletes: the user's tags, links and activity go with it (cascades), as when an
        # admin deletes a user.
        for user in db.session.scalars(select(User).where(User.id.in_(remove))):
            db.session.delete(user)
        db.session.flush()
    if len(rows) == PAGE_SIZE:
        work.next_cursor = str(rows[-1].id)
    return work
