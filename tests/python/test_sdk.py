"""The phone SDK through its generated Python bindings, against a live server.

Run by tests/it/python_sdk.rs, which starts the server, makes an invitation, generates the bindings and sets:
GRAPEVINE_SERVER (http URL), GRAPEVINE_CODE (an invitation code), GRAPEVINE_POINT ("lat,lon,area_code") and
GRAPEVINE_RESULT (a file this test writes the ids it synced into, for the Rust side to check on the server).
Only the standard library: the bindings load the native library with ctypes.
"""

import asyncio
import json
import os
import tempfile
import threading
import unittest

import grapevine_ffi as grapevine

SERVER = os.environ["GRAPEVINE_SERVER"]
CODE = os.environ["GRAPEVINE_CODE"]
LAT, LON, AREA = os.environ["GRAPEVINE_POINT"].split(",")
LAT, LON = float(LAT), float(LON)


def draft(text, **overrides):
    fields = dict(
        category="drugs",
        text=text,
        feeling_safe=2,
        location=grapevine.Location.GPS(lat=LAT, lon=LON, accuracy_m=5.0),
        channel=grapevine.Channel.BARBER_HAIRDRESSER,
    )
    fields.update(overrides)
    return grapevine.Draft(**fields)


class Events(grapevine.SyncListener):
    """Collects the engine's events; called on one of the SDK's threads."""

    def __init__(self):
        self.events = []
        self.changed = threading.Condition()

    def on_event(self, event):
        with self.changed:
            self.events.append(event)
            self.changed.notify_all()

    def wait_for(self, kind, after=0, timeout=30):
        def seen():
            return any(isinstance(event, kind) for event in self.events[after:])

        with self.changed:
            self.changed.wait_for(seen, timeout)
            return seen()


class PhoneSdk(unittest.IsolatedAsyncioTestCase):
    async def test_a_phone_captures_offline_enrols_syncs_and_reads_its_status(self):
        store = await grapevine.open_store(tempfile.mkdtemp(prefix="grapevine-python-"))

        # Offline: capture works before the phone has ever met a server.
        first = await store.capture(draft("Dealing outside the chip shop after school"))
        kept = await store.capture(draft("Cars race past the school gate", category="road-safety"))
        self.assertEqual([state.status for state in await store.list()], ["captured", "captured"])

        # Bad input is refused with its stable code, and nothing else is lost.
        with self.assertRaises(grapevine.GrapevineError.Invalid) as refused:
            await store.capture(draft("   "))
        self.assertEqual(refused.exception.code, "insight_text_empty")
        with self.assertRaises(grapevine.GrapevineError.Invalid) as refused:
            await store.capture(draft("Late", captured_at="yesterday"))
        self.assertEqual(refused.exception.code, "insight_captured_at_invalid")
        with self.assertRaises(grapevine.GrapevineError.NotFound) as refused:
            await store.status("not-an-id")
        self.assertEqual(refused.exception.code, "insight_not_found")
        self.assertIn("not-an-id", refused.exception.message)
        self.assertEqual(len(await store.list()), 2)

        # A certificate authority to trust must be PEM; anything else is refused and nothing changes.
        with self.assertRaises(grapevine.GrapevineError.Certificate):
            grapevine.trust_root_certificates("not a certificate")

        # No sync before enrolling; a wrong code is the server's refusal, with its code.
        with self.assertRaises(grapevine.GrapevineError.NotEnrolled) as refused:
            await store.sync()
        self.assertEqual(refused.exception.code, "not_enrolled")
        with self.assertRaises(grapevine.GrapevineError.Refused) as refused:
            await store.enrol(SERVER, "WRONG-CODE", "Python phone")
        self.assertEqual(refused.exception.code, "invitation_unknown")
        self.assertIsNone(await store.enrolment())

        enrolment = await store.enrol(SERVER, CODE, "Python phone")
        self.assertEqual(enrolment.server_url, SERVER)
        self.assertEqual(await store.enrolment(), enrolment)

        summary = await store.sync()
        self.assertEqual(summary.sent, 2)
        self.assertGreater(summary.bytes_sent, 0)
        filed = await store.status(first)
        self.assertEqual(filed.status, "filed", filed.description.en)
        self.assertEqual(filed.area_code, AREA)
        self.assertIn(AREA, filed.description.en)
        self.assertTrue(filed.description.cy.startswith("wedi'i ffeilio o dan"), filed.description.cy)

        # The campaign came down with the sync: the form renders offline, in Welsh too.
        campaign = await store.campaign()
        self.assertIn("drugs", [category.slug for category in campaign.categories])
        self.assertIn(AREA, [area.code for area in campaign.areas])
        self.assertTrue(campaign.name.cy)

        # Edit, then withdraw: both sync, and the server stops counting the withdrawn one.
        edited = await store.edit(first, grapevine.Changes(text="Dealing by the bus shelter", clear_feeling_safe=True))
        self.assertTrue(edited.unsent_change)
        withdrawn = await store.withdraw(first)
        self.assertTrue(withdrawn.withdrawn)
        with self.assertRaises(grapevine.GrapevineError.Withdrawn) as refused:
            await store.edit(first, grapevine.Changes(text="Again"))
        self.assertEqual(refused.exception.code, "insight_withdrawn")

        # Background sync: progress and the end reach the app's listener.
        events = Events()
        engine = await grapevine.start_sync_engine(store, events, None)
        engine.sync_now()
        self.assertTrue(events.wait_for(grapevine.SyncEvent.FINISHED), events.events)
        self.assertIsInstance(events.events[0], grapevine.SyncEvent.STARTED)
        self.assertEqual(events.events[0].trigger, grapevine.SyncTrigger.DEMAND)
        await engine.stop()
        self.assertTrue(events.wait_for(grapevine.SyncEvent.STOPPED), events.events)

        self.assertEqual((await store.status(first)).status, "withdrawn")
        self.assertEqual((await store.status(kept)).status, "filed")
        with open(os.environ["GRAPEVINE_RESULT"], "w", encoding="utf-8") as result:
            json.dump({"withdrawn": first, "kept": kept, "device": enrolment.device_id}, result)

    async def test_a_store_emptied_is_refused_with_its_code_not_started_afresh(self):
        directory = tempfile.mkdtemp(prefix="grapevine-python-")
        emptied = os.path.join(directory, "grapevine-store.db")
        open(emptied, "wb").close()
        with self.assertRaises(grapevine.GrapevineError.StoreDamaged) as refused:
            await grapevine.open_store(directory)
        self.assertEqual(refused.exception.code, "store_damaged")
        self.assertIn("empty", refused.exception.message)
        self.assertEqual(os.path.getsize(emptied), 0)


if __name__ == "__main__":
    unittest.main()
