"""SMS: the Twilio client, the message table and outbox job, and the demo sink."""
