"""Local servers that speak the real vendor protocols (Slack, PagerDuty) and the demo lab.

They let a new user try the bot without a Slack workspace or a PagerDuty account, and let the
end-to-end tests drive the bot over real sockets. The servers import nothing from the incident
core and the core never imports the sandbox: the bot reaches the servers only through the
official clients with a different base URL. Only the demo lab wires the two together.
"""
