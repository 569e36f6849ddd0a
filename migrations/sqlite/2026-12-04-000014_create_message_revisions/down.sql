DROP TABLE message_revisions;
