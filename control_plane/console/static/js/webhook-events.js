// The webhook events a subscription may ask for, with what each means: the table of
// control_plane/webhook_events.py EVENTS, kept equal to it by tests/control_plane/test_cp_console.py (the JSON
// between "= " and ";" below is parsed there). The create and edit forms offer them as checkboxes.

export const WEBHOOK_EVENTS = [
  [
    "flag.changed",
    "a flag was created, updated (definition or one environment), rolled back, imported or deleted; `data.action` says which"
  ],
  [
    "flag.toggled",
    "a flag was switched on or off in one environment"
  ],
  [
    "segment.changed",
    "a segment was created, updated, rolled back, imported or deleted"
  ],
  [
    "scheduled_change.applied",
    "a scheduled change was applied"
  ],
  [
    "scheduled_change.failed",
    "a scheduled change could not be applied"
  ],
  [
    "change_request.opened",
    "a change request was opened"
  ],
  [
    "change_request.approved",
    "a change request was approved"
  ],
  [
    "change_request.applied",
    "a change request was applied"
  ],
  [
    "key.created",
    "an API or SDK key of the project was created or issued by a rotation"
  ],
  [
    "key.revoked",
    "an API or SDK key of the project was revoked"
  ]
];
