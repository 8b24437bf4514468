"""Fixed sentence sets for the speech benchmarks and tests: what users say to a voice agent.

`ASKED` are things people ask the demo agent and agents like it (the time, the date, help,
bookings, orders, support); `PAUSED` are sentences with a hesitation inside, written with a
comma where the speaker stops, so the voice reaches the pause with the rising, unfinished
intonation of a sentence that goes on (a phrase synthesised on its own ends as if finished).
"""

import re

ASKED = [
    "What time is it?",
    "What is the date today?",
    "Hello, how are you?",
    "Can you help me?",
    "Thank you very much.",
    "Good morning.",
    "Goodbye, see you later.",
    "What can you do?",
    "How does this work?",
    "Can you help me book a table for two tonight?",
    "I would like to order a large pizza.",
    "What is the weather like today?",
    "Is it going to rain tomorrow?",
    "Please call me back in ten minutes.",
    "I need to change my password.",
    "My order has not arrived yet.",
    "Can I speak to a real person?",
    "How much does it cost?",
    "Where is the nearest train station?",
    "Set an alarm for seven in the morning.",
    "Play some music please.",
    "Turn off the lights in the kitchen.",
    "What is my account balance?",
    "I want to cancel my subscription.",
    "Send a message to my mother.",
    "How long will the delivery take?",
    "Do you have any tables free on Friday?",
    "I would like a refund please.",
    "What are your opening hours?",
    "Can you repeat that?",
    "That is not what I said.",
    "Yes, that is right.",
    "No, thank you.",
    "I am looking for a hotel near the airport.",
    "Book a taxi to the city center.",
    "How many people are coming to the meeting?",
    "Remind me to buy milk on the way home.",
    "What is the capital of France?",
    "Tell me a joke.",
    "How far is it to London?",
    "Can I pay by credit card?",
    "The internet is not working in my house.",
    "I lost my bank card yesterday.",
    "Please check the status of my flight.",
    "What time does the store close tonight?",
    "I would like to make an appointment with the doctor.",
    "Is there a parking space near the office?",
    "Could you speak a little slower?",
    "My phone number has changed.",
    "Have a nice day.",
    "What did I ask you last time?",
    "Start again from the beginning.",
]

PAUSED = [
    "I would like to book a table for, four people tonight.",
    "Can you tell me the, weather in London tomorrow?",
    "My name is John and, I live in Paris.",
    "I want to go to the, train station in the morning.",
    "Could you send the invoice to, my office address?",
    "I need a taxi at, seven in the evening.",
    "Please remind me to call, my sister on Sunday.",
    "The package was supposed to arrive on, Tuesday afternoon.",
    "I am looking for a restaurant with, a view of the river.",
    "Can you check whether the flight to, Berlin is on time?",
    "I would like to order two, large pizzas with cheese.",
    "My account number is, one two three four.",
    "We are going to need a room for, three nights next week.",
    "Could you play the song that, we heard yesterday?",
    "I think the problem is with, the router in the hallway.",
    "Please move my appointment to, Thursday at ten.",
    "I lost my card somewhere near, the shopping center.",
    "Tell me how long it takes to, drive to the coast.",
    "I would like to pay with, my credit card please.",
    "Can you turn on the lights in, the living room?",
    "The meeting has been moved to, the second floor.",
    "I want to cancel the order I made, last Friday.",
    "Is there a pharmacy open near, the main square?",
    "Set a timer for, twenty five minutes.",
]


def words(text: str) -> list[str]:
    """Lower case, punctuation gone: how transcripts are compared."""
    return re.sub(r"[^a-z' ]", " ", text.lower()).split()


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    """Word substitutions, deletions and insertions turning `ref` into `hyp` (Levenshtein)."""
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1]
