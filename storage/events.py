"""Event tables (video-call events, their RSVPs and reminders)."""
